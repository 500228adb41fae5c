//! Bulk `$export` end to end over HTTP: kick-off, polling, manifest, NDJSON files,
//! error file, `_type`, `_since`, cancel, NDJSON faults, vendor flavours.

use ehrgate_sandbox::{Flavor, SandboxOptions, serve};
use serde_json::Value;

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn new(sb: &ehrgate_sandbox::Sandbox) -> Client {
        let http = reqwest::Client::new();
        let r: Value = http
            .post(sb.token_url())
            .basic_auth("ehrgate-demo", Some("sandbox-demo-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "system/*.read")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Client { http, token: r["access_token"].as_str().unwrap().to_string() }
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self.http.get(url).bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.unwrap()
    }

    async fn kick_off(&self, url: &str) -> String {
        let r = self.get(url, &[("prefer", "respond-async"), ("accept", "application/fhir+json")]).await;
        assert_eq!(r.status(), 202, "{url}: {}", r.text().await.unwrap());
        r.headers()["content-location"].to_str().unwrap().to_string()
    }

    /// Polls to completion; returns the manifest and how many 202s came first.
    async fn poll(&self, status_url: &str) -> (Value, u32) {
        let mut waits = 0;
        loop {
            let r = self.get(status_url, &[]).await;
            match r.status().as_u16() {
                202 => {
                    assert!(r.headers().contains_key("x-progress"));
                    assert_eq!(r.headers()["retry-after"], "1");
                    waits += 1;
                    assert!(waits < 10);
                }
                200 => return (r.json().await.unwrap(), waits),
                s => panic!("status poll answered {s}"),
            }
        }
    }

    async fn lines(&self, url: &str, fault: Option<&str>) -> Vec<String> {
        let headers: Vec<(&str, &str)> = fault.map(|f| vec![("x-sandbox-fault", f)]).unwrap_or_default();
        let r = self.get(url, &headers).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        r.text().await.unwrap().split_terminator('\n').map(str::to_string).collect()
    }
}

fn counts(manifest: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for o in manifest["output"].as_array().unwrap() {
        *m.entry(o["type"].as_str().unwrap().to_string()).or_default() += o["count"].as_u64().unwrap();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_export_polls_downloads_and_exports_incrementally_with_since() {
    let sb = serve(SandboxOptions { patients: 6, seed: 3, ndjson_lines_per_file: 5, ..Default::default() }).await.unwrap();
    let c = Client::new(&sb).await;
    // Prefer: respond-async is required.
    assert_eq!(c.get(&format!("{}/Group/all/$export", sb.base_url()), &[]).await.status(), 400);
    assert_eq!(c.get(&format!("{}/Group/nope/$export", sb.base_url()), &[("prefer", "respond-async")]).await.status(), 404);

    let status = c.kick_off(&format!("{}/Group/all/$export", sb.base_url())).await;
    let (manifest, waits) = c.poll(&status).await;
    assert_eq!(waits, 2, "two 202s with X-Progress and Retry-After before the manifest");
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["request"].as_str().unwrap().ends_with("/Group/all/$export"));
    let first = counts(&manifest);
    assert_eq!(first["Patient"], 6);
    let mut total = 0;
    for o in manifest["output"].as_array().unwrap() {
        let lines = c.lines(o["url"].as_str().unwrap(), None).await;
        assert_eq!(lines.len() as u64, o["count"].as_u64().unwrap());
        assert!(lines.len() <= 5, "split at 5 lines per file");
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["resourceType"], o["type"]);
        }
        total += lines.len();
    }
    assert!(total > 6 * 3, "patients with their records: {total}");
    // Without a token the files are refused.
    let anon = reqwest::get(manifest["output"][0]["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(anon.status(), 401);

    // Incremental: only what changed after the first export's transactionTime.
    let since = manifest["transactionTime"].as_str().unwrap().to_string();
    let added = sb.add_patients(2);
    let status = c.kick_off(&format!("{}/Group/all/$export?_since={since}&_type=Patient,Condition", sb.base_url())).await;
    let (m2, _) = c.poll(&status).await;
    let second = counts(&m2);
    assert_eq!(second["Patient"], 2, "{second:?}");
    assert!(second["Condition"] >= 2);
    assert_eq!(second.keys().cloned().collect::<Vec<_>>(), vec!["Condition".to_string(), "Patient".to_string()]);
    let ids: Vec<String> = c
        .lines(m2["output"].as_array().unwrap().iter().find(|o| o["type"] == "Patient").unwrap()["url"].as_str().unwrap(), None)
        .await
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, added);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_and_patient_export_error_file_cancel_and_ndjson_faults() {
    let sb = serve(SandboxOptions { patients: 3, export_polls: 0, ..Default::default() }).await.unwrap();
    let c = Client::new(&sb).await;
    // Unknown _type: refused strictly, reported in the error file when lenient.
    assert_eq!(c.get(&format!("{}/$export?_type=Patient,Spaceship", sb.base_url()), &[("prefer", "respond-async")]).await.status(), 400);
    let r = c.get(&format!("{}/$export?_type=Patient,Spaceship", sb.base_url()), &[("prefer", "respond-async, handling=lenient")]).await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let (m, waits) = c.poll(&status).await;
    assert_eq!(waits, 0);
    assert_eq!(counts(&m)["Patient"], 3);
    let err = &m["error"][0];
    assert_eq!(err["type"], "OperationOutcome");
    let errors = c.lines(err["url"].as_str().unwrap(), None).await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("Spaceship") && errors[0].contains("OperationOutcome"));

    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    let good = c.lines(&file, None).await;
    let cut = c.lines(&file, Some("truncate-ndjson")).await;
    assert_eq!(cut.len(), good.len());
    assert!(serde_json::from_str::<Value>(cut.last().unwrap()).is_err(), "last line cut in half");
    let bad = c.lines(&file, Some("invalid-ndjson")).await;
    assert_eq!(bad.len(), good.len() + 1);
    assert_eq!(bad.iter().filter(|l| serde_json::from_str::<Value>(l).is_err()).count(), 1);

    // Cancel: DELETE the status URL; it is gone afterwards.
    let p = c.kick_off(&format!("{}/Patient/$export", sb.base_url())).await;
    assert_eq!(c.http.delete(&p).bearer_auth(&c.token).send().await.unwrap().status(), 202);
    assert_eq!(c.get(&p, &[]).await.status(), 404);
    assert_eq!(c.http.delete(&p).bearer_auth(&c.token).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epic_flavour_exports_groups_only_and_oracle_flavour_lives_under_its_tenant() {
    let epic = serve(SandboxOptions { patients: 2, flavor: Flavor::Epic, export_polls: 0, ..Default::default() }).await.unwrap();
    let c = Client::new(&epic).await;
    for path in ["/$export", "/Patient/$export"] {
        let r = c.get(&format!("{}{path}", epic.base_url()), &[("prefer", "respond-async")]).await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().await.unwrap().contains("Group-level export only"));
    }
    let (m, _) = c.poll(&c.kick_off(&format!("{}/Group/all/$export", epic.base_url())).await).await;
    assert_eq!(counts(&m)["Patient"], 2);

    let oracle =
        serve(SandboxOptions { patients: 2, flavor: Flavor::Oracle { tenant: "ec2458f2-1e24-41c8-b71b-0e701af7583d".into() }, ..Default::default() })
            .await
            .unwrap();
    assert!(oracle.base_url().ends_with("/ec2458f2-1e24-41c8-b71b-0e701af7583d"));
    assert!(oracle.token_url().starts_with(&oracle.base_url()));
    let c = Client::new(&oracle).await;
    assert_eq!(c.get(&format!("{}/Patient/patient-0000", oracle.base_url()), &[]).await.status(), 200);
    assert_eq!(c.get(&format!("http://{}/Patient/patient-0000", oracle.addr()), &[]).await.status(), 404, "no tenant, no data");
    let conf: Value = reqwest::get(format!("{}/.well-known/smart-configuration", oracle.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(conf["token_endpoint"], oracle.token_url());
    assert_eq!(oracle.stats().count("GET", "/Patient/patient-0000"), 1, "counted relative to the tenant base");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_serves_the_same_patients() {
    let opts = || SandboxOptions { patients: 4, seed: 99, require_auth: false, ..Default::default() };
    let (a, b) = (serve(opts()).await.unwrap(), serve(opts()).await.unwrap());
    let other = serve(SandboxOptions { seed: 100, ..opts() }).await.unwrap();
    let body = |sb: &ehrgate_sandbox::Sandbox| {
        let url = format!("{}/Observation?_count=1000", sb.base_url());
        async move {
            let mut v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            v["link"] = Value::Null; // carries the port
            for e in v["entry"].as_array_mut().unwrap() {
                e["fullUrl"] = Value::Null;
            }
            v
        }
    };
    assert_eq!(body(&a).await, body(&b).await);
    assert_ne!(body(&a).await, body(&other).await);
}
