//! Who may do what: principals, roles and tokens (the pure part; the server resolves a
//! request's token against the records in the metadata group and asks [`allows`]).
//!
//! A token is `mrd_<id>_<secret>`: the id (12 hex digits) names its record, the secret (48 hex
//! digits, 192 random bits) is stored only as its SHA-256. A token holds grants: a built-in
//! role on a keyspace name pattern (`*` matches any run of characters). Roles:
//! `reader` (read), `writer` (read, write), `admin` (read, write, and keyspace administration:
//! create, alter, delete) on the keyspaces its pattern matches, and `cluster-admin` (all of
//! those on every keyspace, and the cluster: nodes, failover, fault injection, tokens, audit).

use serde::{Deserialize, Serialize};

use crate::chain::sha256_hex;

pub const TOKEN_PREFIX: &str = "mrd_";
pub const TOKEN_ID_HEX: usize = 12;
pub const TOKEN_SECRET_HEX: usize = 48;
/// Longest token name and keyspace pattern.
pub const NAME_BYTES_MAX: usize = 64;
pub const PATTERN_BYTES_MAX: usize = 128;
/// Grants on one token.
pub const GRANTS_MAX: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    Read,
    Write,
    Admin,
    ClusterAdmin,
}

impl Permission {
    pub fn as_str(&self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::ClusterAdmin => "cluster-admin",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Reader,
    Writer,
    Admin,
    ClusterAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Admin, Role::ClusterAdmin];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::ClusterAdmin => "cluster-admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}: the roles are reader, writer, admin and cluster-admin")
            })
    }

    pub fn grants(&self, p: Permission) -> bool {
        match self {
            Role::Reader => p == Permission::Read,
            Role::Writer => matches!(p, Permission::Read | Permission::Write),
            Role::Admin => p != Permission::ClusterAdmin,
            Role::ClusterAdmin => true,
        }
    }
}

/// A role on the keyspaces whose names match `keyspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    #[serde(default = "any")]
    pub keyspaces: String,
}

fn any() -> String {
    "*".into()
}

impl Grant {
    /// Parses `role` or `role:pattern` (as the CLI's `--grant` takes it).
    pub fn parse(s: &str) -> Result<Grant, String> {
        let (role, pattern) = s.split_once(':').unwrap_or((s, "*"));
        let g = Grant {
            role: Role::parse(role)?,
            keyspaces: pattern.to_string(),
        };
        g.validate()?;
        Ok(g)
    }

    pub fn validate(&self) -> Result<(), String> {
        let p = &self.keyspaces;
        if p.is_empty() || p.len() > PATTERN_BYTES_MAX {
            return Err(format!(
                "a keyspace pattern must be 1 to {PATTERN_BYTES_MAX} bytes, got {}",
                p.len()
            ));
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*')))
        {
            return Err(format!(
                "keyspace pattern {p:?} holds {c:?}: use letters, digits, '_', '-', '.' and '*'"
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!("{} on {}", self.role.as_str(), self.keyspaces)
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `grants` allow `p`: on `keyspace` for read, write and admin (`None`: the
/// permission on no particular keyspace, which only `cluster-admin` holds for admin and only a
/// grant on `*` holds otherwise), and on the cluster for cluster-admin.
pub fn allows(grants: &[Grant], p: Permission, keyspace: Option<&str>) -> bool {
    grants.iter().any(|g| {
        g.role.grants(p)
            && (g.role == Role::ClusterAdmin
                || (p != Permission::ClusterAdmin
                    && match keyspace {
                        Some(ks) => pattern_matches(&g.keyspaces, ks),
                        None => g.keyspaces == "*",
                    }))
    })
}

/// A token's record in the metadata group (`auth/token/<id>`). The secret is not in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// The principal's name (`token:<name>` in the audit log).
    pub name: String,
    pub grants: Vec<Grant>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_ms: u64,
    pub created_by: String,
    #[serde(default)]
    pub revoked_ms: Option<u64>,
}

pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "a token name must be 1 to {NAME_BYTES_MAX} bytes, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')))
    {
        return Err(format!(
            "token name {name:?} holds {c:?}: use letters, digits, '_', '-', '.' and '@'"
        ));
    }
    Ok(())
}

/// A token as a client sends it, split into its id and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    /// A token from 6 + 24 random bytes.
    pub fn from_random(id: [u8; 6], secret: [u8; 24]) -> Token {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Token {
            id: hex(&id),
            secret: hex(&secret),
        }
    }

    pub fn text(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }

    /// Parses `mrd_<id>_<secret>`; the error says what is wrong, never echoing the secret.
    pub fn parse(text: &str) -> Result<Token, String> {
        let rest = text.strip_prefix(TOKEN_PREFIX).ok_or(
            "a Meridian token starts with \"mrd_\" (create one with `meridian auth token create`)",
        )?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or("a Meridian token is mrd_<id>_<secret>")?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(id, TOKEN_ID_HEX) || !hex(secret, TOKEN_SECRET_HEX) {
            return Err(format!(
                "a Meridian token is mrd_<{TOKEN_ID_HEX} hex digits>_<{TOKEN_SECRET_HEX} hex digits>"
            ));
        }
        Ok(Token {
            id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    pub fn secret_sha256(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

/// Whether the secret's hash equals `stored`, in time that does not depend on where they
/// differ.
pub fn secret_matches(secret_sha256: &str, stored: &str) -> bool {
    let (a, b) = (secret_sha256.as_bytes(), stored.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "orders"));
        assert!(pattern_matches("orders", "orders"));
        assert!(!pattern_matches("orders", "orders2"));
        assert!(pattern_matches("orders*", "orders-eu"));
        assert!(pattern_matches("*-eu", "orders-eu"));
        assert!(!pattern_matches("*-eu", "orders-us"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxc"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }

    // Goal: a reader cannot write, a writer cannot administer or touch the cluster, an admin
    // of a pattern administers only there, cluster-admin does everything.
    #[test]
    fn roles_allow_what_they_say() {
        let reader = [Grant::parse("reader").unwrap()];
        assert!(allows(&reader, Permission::Read, Some("x")));
        assert!(!allows(&reader, Permission::Write, Some("x")));
        let writer = [Grant::parse("writer:orders*").unwrap()];
        assert!(allows(&writer, Permission::Write, Some("orders1")));
        assert!(!allows(&writer, Permission::Write, Some("users")));
        assert!(!allows(&writer, Permission::Admin, Some("orders1")));
        assert!(!allows(&writer, Permission::ClusterAdmin, None));
        let admin = [Grant::parse("admin:team-a.*").unwrap()];
        assert!(allows(&admin, Permission::Admin, Some("team-a.x")));
        assert!(!allows(&admin, Permission::Admin, Some("team-b.x")));
        assert!(!allows(&admin, Permission::Admin, None));
        assert!(!allows(&admin, Permission::ClusterAdmin, None));
        let all = [Grant::parse("cluster-admin").unwrap()];
        for p in [Permission::Read, Permission::Write, Permission::Admin] {
            assert!(allows(&all, p, Some("anything")));
        }
        assert!(allows(&all, Permission::ClusterAdmin, None));
        assert!(!allows(&[], Permission::Read, Some("x")));
    }

    #[test]
    fn tokens_parse_and_reject_garbage() {
        let t = Token::from_random([1, 2, 3, 4, 5, 6], [7; 24]);
        let text = t.text();
        assert_eq!(Token::parse(&text), Ok(t.clone()));
        assert!(secret_matches(&t.secret_sha256(), &t.secret_sha256()));
        let other = Token::from_random([1, 2, 3, 4, 5, 6], [8; 24]);
        assert!(!secret_matches(&other.secret_sha256(), &t.secret_sha256()));
        for bad in [
            "",
            "mrd_",
            "abc",
            "mrd_0102_zz",
            &text[..text.len() - 1],
            &format!("{text}0"),
        ] {
            let e = Token::parse(bad).unwrap_err();
            assert!(!e.contains(&t.secret), "{e}");
        }
        assert!(Grant::parse("owner").is_err());
        assert!(Grant::parse("reader:a/b").is_err());
        assert!(validate_name("ops@team").is_ok());
        assert!(validate_name("no spaces").is_err());
    }
}
