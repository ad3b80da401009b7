//! Bad input over HTTP and gRPC gets a 4xx (or INVALID_ARGUMENT / NOT_FOUND /
//! FAILED_PRECONDITION) whose message says what was wrong, and the node keeps serving.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use meridian_server::grpc::pb::kv_client::KvClient;
use meridian_server::grpc::pb::{GetRequest, PutRequest};
use serde_json::{json, Value};

const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

// Goal: every bad-input case of the foundation issue is rejected with a clear message; method:
// send each to a real 3-region cluster, then check the same node still serves good requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::start(&[(REGIONS[0], 1), (REGIONS[1], 1), (REGIONS[2], 1)]);
    cluster.wait_joined(1).await;
    let good = json!({"name": "ks", "home_region": "us-east-1", "regions": REGIONS});
    let r = cluster.create_keyspace(2, good.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let http = &cluster.http;
    let url = |p: &str| cluster.node(2).url(p);

    // Invalid policies.
    let cases = [
        (
            json!({"name": "a", "home_region": "us-east-1", "regions": ["us-east-1", "us-west-2"]}),
            "at least 3 regions",
        ),
        (
            json!({"name": "a", "home_region": "ap-south-1", "regions": REGIONS}),
            "home_region",
        ),
        (
            json!({"name": "a", "home_region": "us-east-1", "regions": REGIONS, "colour": "blue"}),
            "unknown field",
        ),
        (
            json!({"name": "a", "home_region": "us-east-1", "regions": ["us-east-1", "mars-1", "eu-west-1"]}),
            "mars-1",
        ),
    ];
    for (policy, expected) in cases {
        let (status, message) = error_of(cluster.create_keyspace(2, policy.clone()).await).await;
        assert_eq!(status, 400, "{policy}: {message}");
        assert!(
            message.contains(expected),
            "{policy}: {message:?} should mention {expected:?}"
        );
    }
    let (status, message) = error_of(cluster.create_keyspace(2, good).await).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("already exists"), "{message}");

    // Malformed JSON.
    let r = http
        .post(url("/v1/keyspaces"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, message) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("not a valid keyspace policy"), "{message}");
    let r = http
        .post(url("/v1/kv/ks/k/cas"))
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 400);

    // Oversized key and value, unknown keyspace, wrong method.
    let long_key = "k".repeat(4097);
    let (status, message) = error_of(
        http.put(url(&format!("/v1/kv/ks/{long_key}")))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.contains("4097 bytes") && message.contains("4096"),
        "{message}"
    );
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, message) = error_of(
        http.put(url("/v1/kv/ks/big"))
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.contains("value") && message.contains("1048576"),
        "{message}"
    );
    let (status, message) = error_of(
        http.put(url("/v1/kv/nope/k"))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(message.contains("\"nope\" does not exist"), "{message}");
    let (status, message) = error_of(
        http.patch(url("/v1/kv/ks/k"))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert!(message.contains("PATCH"), "{message}");
    let (status, message) = error_of(
        http.get(url("/v1/kv/ks/k?consistency=fresh"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown consistency"), "{message}");

    // gRPC: the same errors as status codes.
    let mut grpc = eventually(
        "the gRPC endpoint accepts connections",
        Duration::from_secs(10),
        || async {
            KvClient::connect(format!("http://{}", cluster.node(2).grpc))
                .await
                .ok()
        },
    )
    .await;
    let e = grpc
        .put(PutRequest {
            keyspace: "ks".into(),
            key: vec![b'k'; 5000],
            value: b"v".to_vec(),
            session: String::new(),
            request_id: Vec::new(),
            context: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("5000 bytes"), "{}", e.message());
    let e = grpc
        .get(GetRequest {
            keyspace: "nope".into(),
            key: b"k".to_vec(),
            consistency: String::new(),
            session: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    // The node still serves, over both APIs.
    cluster
        .put(2, "ks", "after", "ok")
        .await
        .expect("put after bad input");
    assert_eq!(
        cluster.get(2, "ks", "after").await.unwrap().as_deref(),
        Some("ok")
    );
    grpc.put(PutRequest {
        keyspace: "ks".into(),
        key: b"g".to_vec(),
        value: b"1".to_vec(),
        session: String::new(),
        request_id: Vec::new(),
        context: String::new(),
    })
    .await
    .unwrap();
    let e = grpc
        .put(PutRequest {
            keyspace: "ks".into(),
            key: b"g".to_vec(),
            value: b"2".to_vec(),
            session: String::new(),
            request_id: vec![b'r'; 200],
            context: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("request id is 200 bytes"),
        "{}",
        e.message()
    );
    let e = grpc
        .put(PutRequest {
            keyspace: "ks".into(),
            key: b"g".to_vec(),
            value: b"2".to_vec(),
            session: String::new(),
            request_id: Vec::new(),
            context: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("context"), "{}", e.message());
    let got = grpc
        .get(GetRequest {
            keyspace: "ks".into(),
            key: b"g".to_vec(),
            consistency: String::new(),
            session: String::new(),
        })
        .await
        .unwrap();
    let got = got.into_inner();
    assert!(got.found && got.value == b"1");
    let served = got
        .served_by
        .expect("gRPC responses say where they were served");
    assert!(!served.region.is_empty() && served.node > 0);
}
