//! The OpenAPI document describes the API that is really served: every documented operation
//! is routed (no "No such API endpoint", no 405), every one but the health check and login
//! needs a token, every one documents its problem+json errors, and Swagger UI is served
//! offline.

use anyhow::{Result, ensure};
use farm_e2e::{Farm, FarmOptions, or_logs};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_documented_fully() {
    let farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let r = check(&farm).await;
    or_logs(r, &farm);
}

async fn check(farm: &Farm) -> Result<()> {
    let doc = farm.get("/api/v1/openapi.json").await?;
    ensure!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    ensure!(
        doc["servers"][0]["url"] == "/api/v1",
        "servers: {}",
        doc["servers"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    ensure!(paths.len() >= 10, "only {} paths documented", paths.len());

    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue; // `parameters`, `summary`: not operations
            };
            let id = format!("{method} {path}");
            let responses = op["responses"].as_object().expect("responses");
            ensure!(
                responses.keys().any(|k| k.starts_with('2')),
                "{id}: no success response documented"
            );
            let open = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            if !open {
                ensure!(
                    responses.contains_key("4XX"),
                    "{id}: its errors are not documented"
                );
            }
            // Path parameters get a value that names nothing: the handler must answer (404,
            // 422, …), which proves the route exists; the API's fallback would say otherwise.
            let concrete = path
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        "nothing-here"
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let url = format!("{}/api/v1{concrete}", farm.http);
            if path == "/stream" {
                // An endless body: the status line is all this test needs.
                let r = farm
                    .client
                    .get(&url)
                    .bearer_auth(&farm.admin)
                    .send()
                    .await?;
                ensure!(r.status() == 200, "{id}: {}", r.status());
                checked += 1;
                continue;
            }
            let r = farm
                .client
                .request(m.clone(), &url)
                .bearer_auth(&farm.admin)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            ensure!(status != 405, "{id}: documented but not routed for {m}");
            ensure!(
                body["title"] != "No such API endpoint",
                "{id}: documented but not routed ({status} {body})"
            );
            // Without a token the protected operations refuse with 401.
            if !open {
                let r = farm
                    .client
                    .request(m, &url)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await?;
                ensure!(r.status() == 401, "{id} without a token: {}", r.status());
            }
            checked += 1;
        }
    }
    ensure!(checked >= 12, "only {checked} operations checked");

    let ui = farm
        .client
        .get(format!("{}/api/docs/", farm.http))
        .send()
        .await?;
    ensure!(ui.status() == 200, "Swagger UI: {}", ui.status());
    let html = ui.text().await?;
    ensure!(html.contains("swagger"), "Swagger UI page: {html:.200}");
    Ok(())
}
