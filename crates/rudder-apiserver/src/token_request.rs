//! `serviceaccounts/<name>/token` (upstream's TokenRequest REST): issues a service-account
//! JWT (ES256, signed with `<data-dir>/tls/service-account.key`) for the given audiences and
//! lifetime, optionally bound to a Pod (or Secret, or Node) that must exist with the given
//! uid. Authenticating requests that carry such a token is not done yet.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rudder_api::FieldError;
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::object;
use crate::registry::Registry;
use crate::request::Target;
use crate::status::ApiError;

/// The issuer and default audience (upstream kubeadm's `--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("service-account key: {0}")]
    Key(String),
}

/// Signs service-account tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    key_id: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// From the PKCS#8 PEM of a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pair.serialize_der(), &rng)
                .map_err(|e| TokenError::Key(e.to_string()))?;
        let mut signer = TokenSigner { key, rng, key_id: String::new() };
        let digest = ring::digest::digest(&ring::digest::SHA256, &signer.public_key_der());
        signer.key_id = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(signer)
    }

    /// The public key as a DER SubjectPublicKeyInfo (what verifiers need).
    pub fn public_key_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        der
    }

    /// The uncompressed public point (for `ring`'s ECDSA verification).
    pub fn public_point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A compact JWS (ES256) of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, ApiError> {
        let header = json!({ "alg": "ES256", "kid": self.key_id });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("JSON")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON"))
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| ApiError::internal("signing the service-account token failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn target(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Target> {
    Some(Target {
        info: rudder_api::resources::find(group, "v1", plural)?,
        namespace: namespace.map(str::to_owned),
        name: Some(name.to_owned()),
        subresource: None,
    })
}

/// POST serviceaccounts/<name>/token.
pub async fn create(
    reg: &Registry,
    signer: &TokenSigner,
    t: &Target,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request was in an unknown format: {e}"))
    })?;
    if !request.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    let sa_name = t.name.clone().unwrap_or_default();
    let namespace = t.namespace.clone().unwrap_or_default();
    let sa = reg.get(&Target { subresource: None, ..t.clone() }).await?;
    let info = rudder_api::ResourceInfo {
        group: "authentication.k8s.io",
        kind: "TokenRequest",
        plural: "tokenrequests",
        ..t.info.clone()
    };
    let spec = request["spec"].as_object().cloned().unwrap_or_default();
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request("spec.expirationSeconds must be an integer".to_owned())
        })?,
    };
    let mut errors = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        ));
    } else if expiration > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_owned());
    }
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null()).cloned();
    if let Some(b) = &bound {
        let kind = b["kind"].as_str().unwrap_or("");
        if !matches!(kind, "Pod" | "Secret" | "Node") {
            errors.push(FieldError::not_supported(
                "spec.boundObjectRef.kind",
                kind,
                &["Pod", "Node", "Secret"],
            ));
        }
        if b["name"].as_str().unwrap_or("").is_empty() {
            errors.push(FieldError::required("spec.boundObjectRef.name", ""));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(&info, &sa_name, &errors));
    }

    let mut private = json!({
        "namespace": namespace,
        "serviceaccount": { "name": sa_name, "uid": object::meta_str(&sa, "uid").unwrap_or_default() },
    });
    let mut bound_out = bound.clone();
    if let Some(b) = &bound {
        let kind = b["kind"].as_str().unwrap_or_default();
        let name = b["name"].as_str().unwrap_or_default();
        let found = match kind {
            "Pod" => target("", "pods", Some(&namespace), name),
            "Secret" => target("", "secrets", Some(&namespace), name),
            _ => target("", "nodes", None, name),
        }
        .ok_or_else(|| ApiError::internal("bound kind not served"))?;
        let obj = reg.get(&found).await?;
        let uid = object::meta_str(&obj, "uid").unwrap_or_default().to_owned();
        if let Some(want) = b["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated",
                    found.info.plural
                ),
            ));
        }
        if kind == "Pod" {
            let pod_sa = object::path(&obj, "spec.serviceAccountName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            if pod_sa != sa_name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(node) = object::path(&obj, "spec.nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                let node_uid = match target("", "nodes", None, node) {
                    Some(nt) => reg
                        .get(&nt)
                        .await
                        .ok()
                        .and_then(|n| object::meta_str(&n, "uid").map(str::to_owned)),
                    None => None,
                };
                private["node"] = json!({ "name": node, "uid": node_uid.unwrap_or_default() });
            }
        }
        let lower = kind.to_ascii_lowercase();
        private[lower.as_str()] = json!({ "name": name, "uid": uid });
        if let Some(out) = bound_out.as_mut() {
            out["uid"] = json!(uid);
            if out["apiVersion"].as_str().unwrap_or("").is_empty() {
                out["apiVersion"] = json!("v1");
            }
        }
    }

    let now = reg.clock.now();
    let expires = now + Duration::from_secs(expiration as u64);
    let claims = json!({
        "aud": audiences,
        "exp": secs(expires),
        "iat": secs(now),
        "nbf": secs(now),
        "iss": ISSUER,
        "jti": object::new_uid(),
        "kubernetes.io": private,
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    });
    let token = signer.sign(&claims)?;
    let mut out_spec = json!({ "audiences": audiences, "expirationSeconds": expiration });
    if let Some(b) = bound_out {
        out_spec["boundObjectRef"] = b;
    }
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    let meta = object::meta_mut(&mut request);
    meta.insert("name".into(), json!(sa_name));
    meta.insert("namespace".into(), json!(namespace));
    meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
    request["spec"] = out_spec;
    request["status"] = json!({ "token": token, "expirationTimestamp": rfc3339(expires) });
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_es256_jws_that_verify_with_the_public_key() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let signer = TokenSigner::from_pem(&pem).unwrap();
        let token = signer.sign(&json!({ "sub": "x" })).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], signer.key_id());
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            signer.public_point(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).unwrap();
        assert!(key.verify(b"other", &signature).is_err());
        assert_eq!(signer.public_key_der().len(), 91);
        // The same key file gives the same key id.
        assert_eq!(TokenSigner::from_pem(&pem).unwrap().key_id(), signer.key_id());
    }
}
