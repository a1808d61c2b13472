//! Fetch tests against a real local HTTP server (axum + tower-http `ServeDir`, which answers
//! `Range` requests with 206).

use super::*;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok_test";

/// Every request the server saw: the `Range` header, if any.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

struct Server {
    base: String,
    seen: Seen,
    root: tempfile::TempDir,
}

impl Server {
    fn put(&self, name: &str, body: &[u8]) -> JobAssignment {
        std::fs::write(self.root.path().join(name), body).expect("write");
        JobAssignment {
            job_id: format!("job-{name}"),
            name: name.into(),
            url: format!("{}/{name}", self.base),
            sha256: hex::encode(Sha256::digest(body)),
            size: body.len() as u64,
            material: None,
            colour: None,
            trays: vec![],
            plate: None,
        }
    }

    fn requests(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn check_token(
    axum::extract::State(seen): axum::extract::State<Seen>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().expect("lock").push(range);
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return axum::response::IntoResponse::into_response(axum::http::StatusCode::UNAUTHORIZED);
    }
    next.run(req).await
}

async fn server() -> Server {
    let root = tempfile::tempdir().expect("tmp");
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback_service(tower_http::services::ServeDir::new(root.path()))
        .layer(axum::middleware::from_fn_with_state(
            seen.clone(),
            check_token,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base: format!("http://{addr}"),
        seen,
        root,
    }
}

fn fetcher(cache: &Path, max: u64) -> Fetcher {
    crate::ensure_crypto_provider();
    let mut f = Fetcher::new(cache.to_path_buf(), TOKEN.into(), max).expect("client");
    f.retry_delays = vec![Duration::from_millis(10)];
    f
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn downloads_verifies_and_reuses_the_cache() {
    let srv = server().await;
    let cache = tempfile::tempdir().expect("tmp");
    let data = body(200_000, 1);
    let job = srv.put("a.gcode", &data);
    let f = fetcher(cache.path(), 1 << 30);
    let path = f.fetch(&job).await.expect("fetch");
    assert_eq!(path, cache.path().join(format!("{}.gcode", job.sha256)));
    assert_eq!(std::fs::read(&path).expect("read"), data);
    assert_eq!(srv.requests(), vec![None]);
    // Cached: no second request.
    assert_eq!(f.fetch(&job).await.expect("again"), path);
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_partial_file_is_resumed_with_range() {
    let srv = server().await;
    let cache = tempfile::tempdir().expect("tmp");
    let data = body(300_000, 2);
    let job = srv.put("b.gcode", &data);
    let part = cache.path().join(format!("{}.part", job.sha256));
    std::fs::write(&part, &data[..123_456]).expect("partial");
    let path = fetcher(cache.path(), 1 << 30)
        .fetch(&job)
        .await
        .expect("fetch");
    assert_eq!(srv.requests(), vec![Some("bytes=123456-".to_string())]);
    assert_eq!(std::fs::read(&path).expect("read"), data);
    assert!(!part.exists());
}

#[tokio::test]
async fn a_hash_mismatch_is_refused_and_nothing_is_kept() {
    let srv = server().await;
    let cache = tempfile::tempdir().expect("tmp");
    let mut job = srv.put("c.gcode", &body(50_000, 3));
    job.sha256 = hex::encode(Sha256::digest(b"something else"));
    let err = fetcher(cache.path(), 1 << 30)
        .fetch(&job)
        .await
        .expect_err("must refuse");
    assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("not kept"));
    let left: Vec<_> = std::fs::read_dir(cache.path()).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
    // A full download that hashes wrong is final: one request, no retry.
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_and_a_bad_hash_are_clear_final_errors() {
    let srv = server().await;
    let cache = tempfile::tempdir().expect("tmp");
    let job = srv.put("d.gcode", &body(1000, 4));
    let mut f = fetcher(cache.path(), 1 << 30);
    f.token = "wrong".into();
    let err = f.fetch(&job).await.expect_err("refused");
    assert!(err.to_string().contains("check the agent's token"), "{err}");
    assert_eq!(srv.requests().len(), 1, "not retried");
    let mut evil = job.clone();
    evil.sha256 = "../../etc/passwd".into();
    assert!(matches!(f.fetch(&evil).await, Err(FetchError::BadHash(_))));
    let mut missing = srv.put("e.gcode", b"x");
    missing.url = format!("{}/nope.gcode", srv.base);
    f.token = TOKEN.into();
    assert!(matches!(
        f.fetch(&missing).await,
        Err(FetchError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn the_least_recently_used_files_are_evicted_first() {
    let srv = server().await;
    let cache = tempfile::tempdir().expect("tmp");
    let size = 10_000;
    let f = fetcher(cache.path(), 2 * size as u64 + 100);
    let set_age = |p: &Path, secs: u64| {
        let file = std::fs::File::options().append(true).open(p).expect("open");
        file.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .expect("mtime");
    };
    let a = srv.put("a.gcode", &body(size, 10));
    let b = srv.put("b.gcode", &body(size, 11));
    let c = srv.put("c.gcode", &body(size, 12));
    let pa = f.fetch(&a).await.expect("a");
    set_age(&pa, 200);
    let pb = f.fetch(&b).await.expect("b");
    set_age(&pb, 100);
    // Using `a` again makes it the most recent; `b` is now the oldest.
    f.fetch(&a).await.expect("a cached");
    let pc = f.fetch(&c).await.expect("c");
    assert!(pa.exists() && pc.exists());
    assert!(!pb.exists(), "b was least recently used");
    assert_eq!(srv.requests().len(), 3);

    // The file just fetched is kept even when it alone exceeds the budget.
    let tiny = fetcher(cache.path(), 1);
    let d = srv.put("d.gcode", &body(size, 13));
    let pd = tiny.fetch(&d).await.expect("d");
    assert!(pd.exists());
    assert!(!pa.exists() && !pc.exists());
}
