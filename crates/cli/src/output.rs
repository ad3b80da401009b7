//! How the CLI prints what nodes answer: `--output table` (the default: aligned columns for
//! lists, `key: value` lines for records), `json` (as the API returned it) or `yaml`.

use std::sync::Mutex;

use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

static OUTPUT: Mutex<Output> = Mutex::new(Output::Table);

pub fn set(o: Output) {
    *OUTPUT.lock().unwrap() = o;
}

pub fn get() -> Output {
    *OUTPUT.lock().unwrap()
}

/// Prints `v` in the chosen form; `table` renders it for `--output table` (None: the generic
/// rendering).
pub fn emit(v: &Value, table: Option<&dyn Fn(&Value) -> String>) {
    match get() {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(v).expect("JSON values serialise")
        ),
        Output::Yaml => print!("{}", yaml(v)),
        Output::Table => {
            let text = match table {
                Some(f) => f(v),
                None => generic(v),
            };
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
}

/// A scalar as a cell: strings bare, null empty, anything nested as compact JSON (cut at 60
/// characters).
pub fn cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        _ => v.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Aligned columns under upper-case headers.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn is_scalar(v: &Value) -> bool {
    !v.is_object() && !v.is_array()
}

/// A scalar, or a list of scalars (one cell each).
fn shallow(v: &Value) -> bool {
    is_scalar(v) || v.as_array().is_some_and(|a| a.iter().all(is_scalar))
}

/// Objects in an array as a table: one column per key whose values are mostly shallow.
fn objects_table(items: &[Value]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for it in items {
        if let Value::Object(m) = it {
            for (k, v) in m {
                if !keys.contains(k)
                    && (is_scalar(v) || v.as_array().is_some_and(|a| a.iter().all(is_scalar)))
                {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys.truncate(10);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| keys.iter().map(|k| cell(&it[k])).collect())
        .collect();
    let headers: Vec<&str> = keys.iter().map(String::as_str).collect();
    table(&headers, &rows)
}

/// Any answer: a list of records as a table, a record as `key: value` lines with its lists of
/// records as tables under their names.
pub fn generic(v: &Value) -> String {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            objects_table(items)
        }
        Value::Array(items) if items.is_empty() => "(none)\n".into(),
        Value::Object(m) => {
            let mut out = String::new();
            let mut tables = String::new();
            for (k, v) in m {
                match v {
                    Value::Array(items)
                        if !items.is_empty() && items.iter().all(Value::is_object) =>
                    {
                        tables.push_str(&format!("\n{}:\n{}", k, objects_table(items)));
                    }
                    Value::Object(inner) if !inner.is_empty() && inner.values().all(shallow) => {
                        out.push_str(&format!("{k}:\n"));
                        for (ik, iv) in inner {
                            out.push_str(&format!("  {ik}: {}\n", cell(iv)));
                        }
                    }
                    _ => out.push_str(&format!("{k}: {}\n", cell(v))),
                }
            }
            out + &tables
        }
        other => cell(other) + "\n",
    }
}

/// A YAML rendering of a JSON value (strings that YAML would read otherwise are quoted as JSON,
/// which YAML accepts).
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Array(a) if a.is_empty() => out.push_str("[]\n"),
        Value::Object(_) | Value::Array(_) => write_yaml(v, 0, &mut out),
        s => {
            out.push_str(&yaml_scalar(s));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./@+".contains(c))
                && !s.starts_with(['-', '.', '@'])
                && s.parse::<f64>().is_err()
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                );
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let shallow = |x: &Value| {
        is_scalar(x)
            || x.as_object().is_some_and(|m| m.is_empty())
            || x.as_array().is_some_and(|a| a.is_empty())
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = yaml_scalar(&Value::String(k.clone()));
                if shallow(x) {
                    out.push_str(&format!("{pad}{key}: {}\n", yaml_scalar(x)));
                } else {
                    out.push_str(&format!("{pad}{key}:\n"));
                    write_yaml(x, indent + 2, out);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                if shallow(x) {
                    out.push_str(&format!("{pad}- {}\n", yaml_scalar(x)));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    write_yaml(x, indent + 2, out);
                }
            }
        }
        s => out.push_str(&format!("{pad}{}\n", yaml_scalar(s))),
    }
}

/// Whether a command whose own `--json` flag is `json` prints a structured form.
pub fn structured(json: bool) -> bool {
    json || get() != Output::Table
}

/// Prints `v` as JSON when the command's `--json` asked, else in the chosen form.
pub fn emit_as(v: &Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(v).expect("JSON values serialise")
        );
    } else {
        emit(v, None);
    }
}

/// `meridian cluster` as tables: the metadata group, nodes, shards.
pub fn cluster_table(c: &Value) -> String {
    let mut out = format!(
        "metadata leader: {}   voters: {}   spread over regions: {}\n\n",
        cell(&c["meta_leader"]),
        cell(&c["meta_voters"]),
        if c["meta_spread"] == true {
            "yes"
        } else {
            "no"
        }
    );
    let nodes: Vec<Vec<String>> = c["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                cell(&n["id"]),
                cell(&n["region"]),
                cell(&n["zone"]),
                cell(&n["role"]),
                cell(&n["http_addr"]),
                if n["healthy"] == true { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["node", "region", "zone", "role", "http", "healthy"],
        &nodes,
    ));
    let shards: Vec<Vec<String>> = c["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                cell(&s["keyspace"]),
                cell(&s["shard"]),
                cell(&s["replication"]),
                cell(&s["home_region"]),
                cell(&s["leader"]),
                cell(&s["leader_region"]),
                cell(&s["voters"]),
            ]
        })
        .collect();
    if !shards.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "keyspace",
                "shard",
                "replication",
                "home",
                "leader",
                "leader region",
                "voters",
            ],
            &shards,
        ));
    }
    out
}

/// `meridian keyspace list` as a table.
pub fn keyspace_table(r: &Value) -> String {
    let rows: Vec<Vec<String>> = r["keyspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let p = &k["policy"];
            vec![
                cell(&p["name"]),
                cell(&p["replication"]),
                cell(&p["survive"]),
                cell(&p["home_region"]),
                cell(&p["regions"]),
                cell(&p["shards"]),
                cell(&p["read"]),
                cell(&p["conflict"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "(no keyspaces)\n".into();
    }
    table(
        &[
            "name",
            "replication",
            "survive",
            "home",
            "regions",
            "shards",
            "read",
            "conflict",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Goal: tables align and show every record; YAML keeps types and quotes what it must.
    #[test]
    fn renderings() {
        let t =
            generic(&json!([{"id": 1, "region": "us-east-1"}, {"id": 22, "region": "eu-west-1"}]));
        assert_eq!(t, "ID  REGION\n1   us-east-1\n22  eu-west-1\n");
        let y =
            yaml(&json!({"a": 1, "b": "true", "c": [1, {"d": null}], "e": "plain-text", "f": ""}));
        assert_eq!(
            y,
            "a: 1\nb: \"true\"\nc:\n  - 1\n  -\n    d: null\ne: plain-text\nf: \"\"\n"
        );
        let r = generic(&json!({"name": "orders", "nodes": [{"id": 1}], "policy": {"shards": 4}}));
        assert!(
            r.contains("name: orders\npolicy:\n  shards: 4\n\nnodes:\nID\n1\n"),
            "{r}"
        );
    }
}
