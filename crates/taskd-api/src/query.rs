//! Query-string reading shared by the dialects. Each dialect turns a [`QueryError`] into
//! its own envelope.

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    NotUtf8(String),
    Repeated(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::NotUtf8(k) => write!(f, "query parameter {k} is not valid UTF-8"),
            QueryError::Repeated(k) => write!(f, "query parameter {k} is given more than once"),
        }
    }
}

/// The decoded query pairs. Keys are unique: a repeated key is an error, because none of
/// the APIs served takes a list in the query and guessing which value wins hides bugs.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, QueryError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = decode(k).ok_or_else(|| QueryError::NotUtf8(k.to_string()))?;
            let value = decode(v).ok_or_else(|| QueryError::NotUtf8(key.clone()))?;
            if pairs.iter().any(|(existing, _)| *existing == key) {
                return Err(QueryError::Repeated(key));
            }
            pairs.push((key, value));
        }
        Ok(Query(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> Option<String> {
    // '+' stays '+': the SDKs percent-encode spaces, and none of our values has either.
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects_repeats() {
        let q = Query::parse(Some("a=1&b=x%20y&c")).unwrap();
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some("x y"));
        assert_eq!(q.get("c"), Some(""));
        assert_eq!(q.get("d"), None);
        assert_eq!(
            Query::parse(Some("a=1&a=2")).unwrap_err(),
            QueryError::Repeated("a".into())
        );
        assert!(Query::parse(Some("a=%FF")).is_err());
    }
}
