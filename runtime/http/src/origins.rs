//! URLs parsed against their origin, which is parsed once.
//!
//! Parsing a URL is mostly parsing its host (IDNA mapping included): about 3k of the 5.7k
//! instructions a `Url::parse` of `http://127.0.0.1:8080/orders` takes, on every call of every
//! step, for the handful of hosts a deployment's services live on. A path-absolute reference
//! joined onto a parsed origin is the same URL by the URL standard (scheme, credentials, host
//! and port come from the base; path, query and fragment from the reference), so the host is
//! parsed once per origin and each call parses only the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::Url;

/// Origins kept at most; past that, URLs of new origins are parsed whole. Services are few,
/// and a workflow that builds hosts from data must not grow the map without end.
const MAX_ORIGINS: usize = 64;

#[derive(Debug, Clone, Default)]
pub(super) struct Origins {
    parsed: Arc<Mutex<HashMap<Box<str>, Url>>>,
}

impl Origins {
    /// Exactly what `Url::parse(url)` returns.
    pub(super) fn parse(&self, url: &str) -> Result<Url, url::ParseError> {
        let Some((origin, rest)) = split(url) else {
            return Url::parse(url);
        };
        let mut parsed = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(base) = parsed.get(origin) {
            return base.join(rest);
        }
        // An origin that does not parse alone may still begin a URL that does (`http://` and
        // `/x` make `http:///x`, host `x`): parse those whole.
        let Ok(base) = Url::parse(origin) else {
            return Url::parse(url);
        };
        let joined = base.join(rest);
        if parsed.len() < MAX_ORIGINS {
            parsed.insert(origin.into(), base);
        }
        joined
    }
}

/// `url` as `scheme://authority` and a path-absolute rest (`/...`), when it has that shape
/// plainly: anything else (no authority, a rest that the standard reads as an authority, such
/// as `//x` or `/\x`, leading or trailing white space) is parsed whole.
fn split(url: &str) -> Option<(&str, &str)> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority_start = scheme_end + "://".len();
    let authority_len = url[authority_start..].find(['/', '\\', '?', '#'])?;
    let rest_start = authority_start + authority_len;
    let (origin, rest) = url.split_at(rest_start);
    let plain = |c: char| c.is_ascii_graphic();
    if !rest.starts_with('/')
        || rest[1..].starts_with(['/', '\\'])
        || !origin.chars().all(plain)
        || !rest.ends_with(plain)
        || rest.contains(['\t', '\n', '\r'])
    {
        return None;
    }
    Some((origin, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_parses_the_same_through_its_origin() {
        let origins = Origins::default();
        let urls = [
            "http://127.0.0.1:8080/orders",
            "http://127.0.0.1:8080/orders/42?expand=items&x=%20y#frag",
            "http://127.0.0.1:8080/orders/../payments/./7",
            "http://LOCALHOST:80/a%2Fb/c d",
            "https://user:pa%40ss@api.example.com/v1/charge?amount=1500",
            "https://api.example.com:443/",
            "http://[::1]:9000/q?x=1",
            "http://bücher.example/straße",
            "http://h//double",
            "http://h/\\back",
            "http://h\\path",
            "http://h",
            "http://h?only=query",
            "http://h#only-fragment",
            "http:/one-slash/x",
            "http://h/tail ",
            "http://h/with\ttab",
            "http://exa mple.com/x",
            "http://h:99999/x",
            "http:///no-host",
            "ftp://files.example/x",
            "not a url",
        ];
        // Twice: the first pass parses and keeps origins, the second joins onto them.
        for _ in 0..2 {
            for url in urls {
                assert_eq!(origins.parse(url), Url::parse(url), "{url}");
            }
        }
        assert!(
            origins
                .parsed
                .lock()
                .unwrap()
                .contains_key("http://127.0.0.1:8080")
        );
    }

    #[test]
    fn origins_past_the_limit_are_parsed_whole_and_not_kept() {
        let origins = Origins::default();
        for n in 0..MAX_ORIGINS + 10 {
            let url = format!("http://host-{n}.example/x");
            assert_eq!(origins.parse(&url), Url::parse(&url));
        }
        assert_eq!(origins.parsed.lock().unwrap().len(), MAX_ORIGINS);
    }
}
