//! Bulk `$export` end to end over HTTP: kick-off (GET and POST `Parameters`), polling,
//! manifest, NDJSON files, error file, `_type`, `_since`, `patient`, deleted resources,
//! cancel, expiry, NDJSON faults, vendor flavours, resource counts.

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

// ---- POST kick-off, deletions, expiry, counts (no auth, no polling) ----

fn quick(patients: usize) -> SandboxOptions {
    SandboxOptions { patients, seed: 5, require_auth: false, export_polls: 0, export_retry_after_secs: 0, ..Default::default() }
}

fn parameters(params: Value) -> Value {
    serde_json::json!({"resourceType": "Parameters", "parameter": params})
}

async fn post_export(url: &str, body: &Value, prefer: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("prefer", prefer)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The status URL of an accepted kick-off (panics with the body otherwise).
async fn accepted(r: reqwest::Response) -> String {
    let status = r.status();
    let location = r.headers().get("content-location").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 202, "{}", r.text().await.unwrap());
    location.unwrap()
}

/// With `export_polls: 0` the first poll answers the manifest.
async fn manifest(status_url: &str) -> Value {
    let r = reqwest::get(status_url).await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn ndjson(url: &str) -> Vec<Value> {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every resource in a manifest's `output`, checking each file's `count`.
async fn output(m: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for o in m["output"].as_array().unwrap() {
        let lines = ndjson(o["url"].as_str().unwrap()).await;
        assert_eq!(lines.len() as u64, o["count"].as_u64().unwrap());
        all.extend(lines);
    }
    all
}

/// `Type/id` of every DELETE in a manifest's `deleted` files.
async fn deleted(m: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    for d in m["deleted"].as_array().unwrap() {
        assert_eq!(d["type"], "Bundle");
        let lines = ndjson(d["url"].as_str().unwrap()).await;
        assert_eq!(lines.len() as u64, d["count"].as_u64().unwrap());
        for b in lines {
            assert_eq!((b["resourceType"].as_str(), b["type"].as_str()), (Some("Bundle"), Some("transaction")), "{b}");
            assert!(b["id"].as_str().is_some_and(|id| !id.is_empty()));
            for e in b["entry"].as_array().unwrap() {
                assert_eq!(e["request"]["method"], "DELETE");
                urls.push(e["request"]["url"].as_str().unwrap().to_string());
            }
        }
    }
    urls
}

fn owner(r: &Value) -> String {
    if r["resourceType"] == "Patient" { format!("Patient/{}", r["id"].as_str().unwrap()) } else { r["subject"]["reference"].as_str().unwrap().to_string() }
}

fn key(r: &Value) -> String {
    format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_kick_off_with_type_and_patient_exports_only_those_patients_and_types() {
    let sb = serve(quick(5)).await.unwrap();
    let base = sb.base_url();
    let chosen = ["Patient/patient-0001", "Patient/patient-0003"];
    let body = parameters(serde_json::json!([
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_type", "valueString": "Condition"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "patient", "valueReference": {"reference": chosen[0]}},
        {"name": "patient", "valueReference": {"reference": chosen[1]}},
    ]));
    let m = manifest(&accepted(post_export(&format!("{base}/Patient/$export"), &body, "respond-async").await).await).await;
    assert_eq!(m["request"], format!("{base}/Patient/$export"), "a POST's request is its URL");
    assert!(m.get("deleted").is_none(), "no _since, no deleted: {m}");
    let got = output(&m).await;
    let types: std::collections::BTreeSet<&str> = got.iter().map(|r| r["resourceType"].as_str().unwrap()).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), vec!["Condition", "Observation", "Patient"]);
    assert!(got.iter().all(|r| chosen.contains(&owner(r).as_str())), "only the chosen patients' records");
    // Exactly those patients' records of those types, as the REST search counts them.
    for ty in ["Patient", "Observation", "Condition"] {
        let mut expected = 0;
        for p in chosen {
            let q = if ty == "Patient" { format!("_id={}", &p[8..]) } else { format!("patient={p}") };
            let b: Value = reqwest::get(format!("{base}/{ty}?{q}&_count=1000")).await.unwrap().json().await.unwrap();
            expected += b["total"].as_u64().unwrap();
        }
        assert_eq!(got.iter().filter(|r| r["resourceType"] == ty).count() as u64, expected, "{ty}");
    }
    assert_eq!(got.iter().filter(|r| r["resourceType"] == "Patient").count(), 2);

    // Group level, `_since` as valueInstant: before the seed data, so everything of that patient.
    let body = parameters(serde_json::json!([
        {"name": "_since", "valueInstant": "2023-01-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": "Patient/patient-0002"}},
    ]));
    let m = manifest(&accepted(post_export(&format!("{base}/Group/all/$export"), &body, "respond-async").await).await).await;
    let got = output(&m).await;
    assert!(got.len() > 3 && got.iter().all(|r| owner(r) == "Patient/patient-0002"), "{got:?}");
    assert_eq!(m["deleted"], serde_json::json!([]), "a _since export lists deletions, here none");

    // Refusals: unknown patient, patient on system level, not a Parameters body, no Prefer.
    let unknown = parameters(serde_json::json!([{"name": "patient", "valueReference": {"reference": "Patient/nobody"}}]));
    let r = post_export(&format!("{base}/Patient/$export"), &unknown, "respond-async").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Patient/nobody"));
    let system = parameters(serde_json::json!([{"name": "patient", "valueReference": {"reference": "Patient/patient-0001"}}]));
    let r = post_export(&format!("{base}/$export"), &system, "respond-async").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not-supported"));
    let r = post_export(&format!("{base}/$export"), &serde_json::json!({"resourceType": "Patient"}), "respond-async").await;
    assert_eq!(r.status(), 400);
    let bad_since = parameters(serde_json::json!([{"name": "_since", "valueString": "2024-01-01"}]));
    assert_eq!(post_export(&format!("{base}/$export"), &bad_since, "respond-async").await.status(), 400, "_since needs valueInstant/valueDateTime");
    assert_eq!(post_export(&format!("{base}/$export"), &parameters(serde_json::json!([])), "").await.status(), 400);
    let r = reqwest::Client::new().post(format!("{base}/$export")).header("prefer", "respond-async").header("content-type", "text/plain").body("_type=Patient").send().await.unwrap();
    assert_eq!(r.status(), 415);

    // System level, plain application/json and `_since` as valueDateTime.
    let body = parameters(serde_json::json!([{"name": "_type", "valueString": "Group"}, {"name": "_since", "valueDateTime": "2023-06-01"}]));
    let r = reqwest::Client::new()
        .post(format!("{base}/$export"))
        .header("prefer", "respond-async")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let m = manifest(&accepted(r).await).await;
    assert_eq!(output(&m).await.iter().map(key).collect::<Vec<_>>(), vec!["Group/all".to_string()]);

    // The Epic flavour still takes Group-level exports only, POST included.
    let epic = serve(SandboxOptions { flavor: Flavor::Epic, ..quick(2) }).await.unwrap();
    let empty = parameters(serde_json::json!([]));
    for path in ["/$export", "/Patient/$export"] {
        assert_eq!(post_export(&format!("{}{path}", epic.base_url()), &empty, "respond-async").await.status(), 400, "{path}");
    }
    let m = manifest(&accepted(post_export(&format!("{}/Group/all/$export", epic.base_url()), &empty, "respond-async").await).await).await;
    assert_eq!(counts(&m)["Patient"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_parameter_is_refused_unless_lenient() {
    let sb = serve(quick(2)).await.unwrap();
    let url = format!("{}/Patient/$export", sb.base_url());
    let body = parameters(serde_json::json!([
        {"name": "_type", "valueString": "Patient"},
        {"name": "_typeFilter", "valueString": "Patient?gender=female"},
    ]));
    let r = post_export(&url, &body, "respond-async").await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("OperationOutcome") && text.contains("_typeFilter"), "{text}");

    let m = manifest(&accepted(post_export(&url, &body, "respond-async, handling=lenient").await).await).await;
    assert_eq!(counts(&m)["Patient"], 2);
    let errors = ndjson(m["error"][0]["url"].as_str().unwrap()).await;
    assert!(errors.iter().any(|e| e.to_string().contains("_typeFilter")), "the ignored parameter is reported: {errors:?}");

    // The GET form shares the rules.
    let get = |prefer: &'static str| {
        let url = format!("{url}?_type=Patient&_elements=id");
        async move { reqwest::Client::new().get(url).header("prefer", prefer).send().await.unwrap().status() }
    };
    assert_eq!(get("respond-async").await, 400);
    assert_eq!(get("respond-async, handling=lenient").await, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_listed_in_deleted_files_of_since_exports_only() {
    let sb = serve(quick(4)).await.unwrap();
    let base = sb.base_url();
    let full = |since: Option<&str>| {
        let url = match since {
            Some(s) => format!("{base}/$export?_since={s}"),
            None => format!("{base}/$export"),
        };
        async move { manifest(&accepted(reqwest::Client::new().get(url).header("prefer", "respond-async").send().await.unwrap()).await).await }
    };
    let before = full(None).await;
    let before_keys: Vec<String> = output(&before).await.iter().map(key).collect();
    assert!(before_keys.contains(&"Observation/obs-0001-0-0".to_string()) && before_keys.contains(&"Patient/patient-0002".to_string()));
    let since = before["transactionTime"].as_str().unwrap().to_string();

    // One in process, one over the admin API; unknown ones are refused.
    assert!(sb.delete("Observation", "obs-0001-0-0"));
    assert!(!sb.delete("Observation", "obs-0001-0-0"), "already gone");
    let admin = format!("http://{}/_sandbox/delete", sb.addr());
    let http = reqwest::Client::new();
    let r = http.post(&admin).json(&serde_json::json!({"type": "Patient", "id": "patient-0002"})).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.post(&admin).json(&serde_json::json!({"type": "Patient", "id": "nobody"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("OperationOutcome"));
    assert_eq!(reqwest::get(format!("{base}/Observation/obs-0001-0-0")).await.unwrap().status(), 410);
    assert_eq!(reqwest::get(format!("{base}/Observation/obs-9999-0-0")).await.unwrap().status(), 404);

    // `_since` before the deletions: both listed, neither in the output.
    let m = full(Some(&since)).await;
    let mut gone = deleted(&m).await;
    gone.sort();
    assert_eq!(gone, vec!["Observation/obs-0001-0-0".to_string(), "Patient/patient-0002".to_string()]);
    let changed: Vec<String> = output(&m).await.iter().map(key).collect();
    assert_eq!(changed, vec!["Group/all".to_string()], "only Group/all changed (its members)");

    // A full export omits them and lists no deletions.
    let after = full(None).await;
    assert!(after.get("deleted").is_none_or(|d| d.as_array().unwrap().is_empty()), "{after}");
    let after_keys: Vec<String> = output(&after).await.iter().map(key).collect();
    assert!(!after_keys.contains(&"Observation/obs-0001-0-0".to_string()) && !after_keys.contains(&"Patient/patient-0002".to_string()));
    assert_eq!(after_keys.len(), before_keys.len() - 2);

    // After the deletions' time: none.
    let m = full(Some(after["transactionTime"].as_str().unwrap())).await;
    assert!(deleted(&m).await.is_empty());

    // Group and Patient level: deletions of (former) member patients, narrowed by type and `patient`.
    let group = |params: Value| {
        let url = format!("{base}/Group/all/$export");
        async move { manifest(&accepted(post_export(&url, &parameters(params), "respond-async").await).await).await }
    };
    let since_p = serde_json::json!({"name": "_since", "valueInstant": since});
    let m = group(serde_json::json!([since_p, {"name": "_type", "valueString": "Patient"}])).await;
    assert_eq!(deleted(&m).await, vec!["Patient/patient-0002".to_string()], "a patient deleted while a member");
    let m = group(serde_json::json!([since_p, {"name": "patient", "valueReference": {"reference": "Patient/patient-0001"}}])).await;
    assert_eq!(deleted(&m).await, vec!["Observation/obs-0001-0-0".to_string()]);
    let m = group(serde_json::json!([since_p, {"name": "patient", "valueReference": {"reference": "Patient/patient-0003"}}])).await;
    assert!(deleted(&m).await.is_empty());
    let url = format!("{base}/Patient/$export?_since={since}&_type=Observation");
    let m = manifest(&accepted(http.get(url).header("prefer", "respond-async").send().await.unwrap()).await).await;
    assert_eq!(deleted(&m).await, vec!["Observation/obs-0001-0-0".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_exports_answer_gone_and_later_exports_work() {
    let sb = serve(quick(2)).await.unwrap();
    let kick = || {
        let url = format!("{}/Patient/$export", sb.base_url());
        async move { accepted(reqwest::Client::new().get(url).header("prefer", "respond-async").send().await.unwrap()).await }
    };
    let done = kick().await;
    let m = manifest(&done).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(ndjson(&file).await.len() as u64, m["output"][0]["count"].as_u64().unwrap());
    let pending = kick().await; // never polled

    let r = reqwest::Client::new().post(format!("http://{}/_sandbox/expire-exports", sb.addr())).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = reqwest::get(&file).await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("OperationOutcome"));
    assert_eq!(reqwest::get(&done).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(&pending).await.unwrap().status(), 404);
    assert_eq!(reqwest::Client::new().delete(&pending).send().await.unwrap().status(), 404, "nothing left to cancel");
    assert_eq!(reqwest::get(&file).await.unwrap().status(), 410, "still gone after the cancel attempt");

    // A new export works; the in-process call expires it too.
    let fresh = kick().await;
    let m = manifest(&fresh).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    assert!(!ndjson(&file).await.is_empty());
    sb.expire_exports();
    assert_eq!(reqwest::get(&file).await.unwrap().status(), 410);
    assert_eq!(reqwest::get(&fresh).await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_a_full_system_export() {
    let sb = serve(SandboxOptions { ndjson_lines_per_file: 7, ..quick(6) }).await.unwrap();
    let base = sb.base_url();
    sb.add_patients(1);
    let task = serde_json::json!({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Patient/patient-0000"}});
    let r = reqwest::Client::new().post(format!("{base}/Task")).header("content-type", "application/fhir+json").body(task.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(sb.delete("Condition", "cond-0004-0"));

    let counts = sb.counts();
    assert_eq!(counts["Patient"], 7);
    assert_eq!(counts["Task"], 1);
    assert_eq!(counts["Group"], 1);
    let m = manifest(&accepted(reqwest::Client::new().get(format!("{base}/$export")).header("prefer", "respond-async").send().await.unwrap()).await).await;
    let mut lines: std::collections::BTreeMap<String, usize> = counts.keys().map(|t| (t.clone(), 0)).collect();
    for r in output(&m).await {
        *lines.entry(r["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(lines, counts);

    let stats: Value = reqwest::get(format!("http://{}/_sandbox/stats", sb.addr())).await.unwrap().json().await.unwrap();
    assert_eq!(stats["resources"], serde_json::to_value(&counts).unwrap());
}
