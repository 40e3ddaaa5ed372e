//! Plain S3 requests to the test server (it checks no signatures), independent of kvault's
//! storage code: put, get and list objects of the test's bucket.
//!
//! Every request names a caller in an `Authorization` header with a dummy signature: the
//! server answers an anonymous GET of a private bucket with 403.

use crate::common::Cluster;

pub struct RawS3 {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
}

impl RawS3 {
    pub fn new(cluster: &Cluster) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=kvault-test/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=0",
            ),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("http client");
        Self {
            http,
            endpoint: cluster.s3_endpoint.clone(),
            bucket: cluster.bucket.clone(),
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.endpoint, self.bucket)
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        let resp = self
            .http
            .put(self.url(key))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "PUT {key}: {:?}",
            resp.text().await
        );
    }

    /// The object's bytes; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let resp = self.http.get(self.url(key)).send().await.unwrap();
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert!(resp.status().is_success(), "GET {key}: {}", resp.status());
        Some(resp.bytes().await.unwrap().to_vec())
    }

    /// The key of every object that starts with `prefix` (ListObjectsV2, every page).
    pub async fn list(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_owned()), ("prefix", prefix.to_owned())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let url = format!("{}/{}", self.endpoint, self.bucket);
            let resp = self.http.get(url).query(&query).send().await.unwrap();
            assert!(
                resp.status().is_success(),
                "list {prefix}: {}",
                resp.status()
            );
            let xml = resp.text().await.unwrap();
            for contents in xml.split("<Contents>").skip(1) {
                out.push(unescape(tag(contents, "Key").unwrap_or_default()));
            }
            match tag(&xml, "NextContinuationToken") {
                Some(next) if tag(&xml, "IsTruncated") == Some("true") => {
                    token = Some(unescape(next))
                }
                _ => return out,
            }
        }
    }
}

/// The text of the first `<name>...</name>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
