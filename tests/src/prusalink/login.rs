//! The simulated printer's login: HTTP Digest the way PrusaLink's web server (PoorWSGI) checks
//! it — realm, `algorithm=MD5-sess`, `qop=auth`, `opaque`, the `uri` against the request, a
//! time-limited nonce (`stale=true` once expired) — with this module's own MD5 arithmetic from
//! RFC 2617, so the agent's Digest crate is checked by something other than itself; and
//! `X-Api-Key` (a wrong key is 403 `Bad X-Api-Key.`, none falls back to Digest).

use super::{Printer, REALM};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use md5::{Digest as _, Md5};
use std::collections::HashMap;
use std::time::Instant;

pub(super) fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `k=v, k="v, w"` → map (the parameters of an `Authorization: Digest` header).
fn digest_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let (v, after) = match after.strip_prefix('"') {
            Some(q) => match q.split_once('"') {
                Some((v, a)) => (v, a),
                None => (q, ""),
            },
            None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
        };
        out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        rest = after.trim_start_matches([',', ' ']);
    }
    out
}

impl Printer {
    fn opaque() -> String {
        md5_hex("prusalink-sim")
    }

    fn challenge(&mut self, stale: bool) -> Response {
        self.refused += 1;
        self.nonce_seq += 1;
        let nonce = md5_hex(&format!("nonce-{}-{:?}", self.nonce_seq, Instant::now()));
        self.nonces.insert(nonce.clone(), Instant::now());
        if stale {
            self.stale_answers += 1;
        }
        let value = format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=\"MD5-sess\", nonce=\"{nonce}\", opaque=\"{}\"{}",
            Printer::opaque(),
            if stale { ", stale=true" } else { "" }
        );
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, value)],
            "Unauthorized",
        )
            .into_response()
    }

    /// `None` when the request may go on; else the 401/403 answer.
    pub(super) fn authorize(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response> {
        if let Some(key) = headers.get("x-api-key") {
            if self
                .setup
                .api_key
                .as_deref()
                .is_some_and(|k| key.as_bytes() == k.as_bytes())
            {
                return None;
            }
            self.refused += 1;
            return Some((StatusCode::FORBIDDEN, "Bad X-Api-Key.").into_response());
        }
        let Some((user, pass)) = self.setup.digest.clone() else {
            return Some(self.challenge(false));
        };
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Digest "))
        else {
            return Some(self.challenge(false));
        };
        let a = digest_params(auth);
        let get = |k: &str| a.get(k).map(String::as_str).unwrap_or("");
        let issued = self.nonces.get(get("nonce")).copied();
        if issued.is_none_or(|t| t.elapsed() > self.setup.nonce_ttl) {
            return Some(self.challenge(true));
        }
        let full_path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        let fields_ok = get("algorithm") == "MD5-sess"
            && get("opaque") == Printer::opaque()
            && get("uri") == full_path
            && get("qop") == "auth"
            && get("realm") == REALM
            && get("username") == user;
        let ha1 = md5_hex(&format!(
            "{}:{}:{}",
            md5_hex(&format!("{user}:{REALM}:{pass}")),
            get("nonce"),
            get("cnonce")
        ));
        let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
        let want = md5_hex(&format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            get("nonce"),
            get("nc"),
            get("cnonce")
        ));
        if fields_ok && want == get("response") {
            None
        } else {
            Some(self.challenge(false))
        }
    }
}
