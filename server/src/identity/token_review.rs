//! Kubernetes TokenReview as a way to authenticate CSR and xDS callers, as istiod does:
//! the pod-bound service-account token of the projected `istio-token` volume (audience
//! `istio-ca`) is sent to the API server, which says whose it is. Used for tokens of
//! issuers shoal has no keys of (`--jwt-issuer` keys still verify locally).
//!
//! Answers are cached for the token's remaining life (at most [`MAX_LIFE`]), in a bounded
//! table; a refusal is not cached. The API server unreachable means refused: no
//! certificate and no secrets on a guess.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use shoal_ca::{AuthError, Caller, CallerKind, Identity, TokenReviewer};

/// The audience Istio's agents request their tokens for.
pub const AUDIENCE: &str = "istio-ca";
/// Longest a review answer is reused.
pub const MAX_LIFE: Duration = Duration::from_secs(3600);
/// Most answers kept.
const MAX_CACHED: usize = 8192;
/// Longest a review may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct KubeTokenReview {
    client: Client,
    runtime: tokio::runtime::Handle,
    trust_domain: String,
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl KubeTokenReview {
    /// Reviews with `client`, blocking on `runtime` (reviews are asked from blocking
    /// threads).
    pub fn new(client: Client, runtime: tokio::runtime::Handle, trust_domain: &str) -> Self {
        KubeTokenReview {
            client,
            runtime,
            trust_domain: trust_domain.to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, token: &str) -> Option<Caller> {
        let cache = self.cache.lock();
        let (caller, until) = cache.get(token)?;
        (Instant::now() < *until).then(|| caller.clone())
    }

    fn remember(&self, token: &str, caller: &Caller) {
        let life = expires_in(token).unwrap_or(Duration::ZERO).min(MAX_LIFE);
        if life.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, until)| *until > now);
        }
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(token.to_string(), (caller.clone(), now + life));
    }

    async fn ask(&self, token: &str) -> Result<TokenReview, AuthError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        match tokio::time::timeout(TIMEOUT, api.create(&PostParams::default(), &review)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(AuthError::ReviewFailed(e.to_string())),
            Err(_) => Err(AuthError::ReviewFailed(format!(
                "no answer within {TIMEOUT:?}"
            ))),
        }
    }
}

impl TokenReviewer for KubeTokenReview {
    fn review(&self, token: &str) -> Result<Caller, AuthError> {
        if let Some(caller) = self.cached(token) {
            return Ok(caller);
        }
        let answer = self.runtime.block_on(self.ask(token));
        metrics::counter!(
            "shoal_token_reviews_total",
            "result" => match &answer { Ok(_) => "answered", Err(_) => "failed" }
        )
        .increment(1);
        let caller = caller(&answer?, &self.trust_domain)?;
        self.remember(token, &caller);
        Ok(caller)
    }
}

/// Whose token the API server says it is.
fn caller(review: &TokenReview, trust_domain: &str) -> Result<Caller, AuthError> {
    let status = review
        .status
        .as_ref()
        .ok_or_else(|| AuthError::ReviewFailed("the review has no status".into()))?;
    if status.authenticated != Some(true) {
        return Err(AuthError::ReviewRefused(
            status
                .error
                .clone()
                .unwrap_or_else(|| "not authenticated".into()),
        ));
    }
    if let Some(audiences) = &status.audiences
        && !audiences.iter().any(|a| a == AUDIENCE)
    {
        return Err(AuthError::WrongAudience);
    }
    let user = status.user.as_ref().ok_or(AuthError::NoServiceAccount)?;
    let (namespace, account) = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|rest| rest.split_once(':'))
        .ok_or(AuthError::NoServiceAccount)?;
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .cloned()
    };
    Ok(Caller {
        identity: Identity::new(trust_domain.to_string(), namespace, account)?,
        node: extra("authentication.kubernetes.io/node-name"),
        pod: extra("authentication.kubernetes.io/pod-name"),
        via: CallerKind::TokenReview,
    })
}

/// How long the token says it is valid (its `exp`, read without verifying: the API server
/// has just vouched for the token).
fn expires_in(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    exp.checked_sub(now).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    fn review(status: TokenReviewStatus) -> TokenReview {
        TokenReview {
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn the_api_servers_answer_names_the_caller() {
        let user = UserInfo {
            username: Some("system:serviceaccount:shop:web".into()),
            extra: Some(
                [
                    (
                        "authentication.kubernetes.io/pod-name".to_string(),
                        vec!["web-1".to_string()],
                    ),
                    (
                        "authentication.kubernetes.io/node-name".to_string(),
                        vec!["n1".to_string()],
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let ok = review(TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec![AUDIENCE.into()]),
            user: Some(user.clone()),
            ..Default::default()
        });
        let c = caller(&ok, "cluster.local").expect("a caller");
        assert_eq!(
            c.identity.spiffe_uri(),
            "spiffe://cluster.local/ns/shop/sa/web"
        );
        assert_eq!(
            (c.pod.as_deref(), c.node.as_deref()),
            (Some("web-1"), Some("n1"))
        );
        let refused = review(TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..Default::default()
        });
        assert!(
            matches!(caller(&refused, "cluster.local"), Err(AuthError::ReviewRefused(m)) if m.contains("invalid"))
        );
        let other_audience = review(TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["kubernetes".into()]),
            user: Some(user),
            ..Default::default()
        });
        assert!(matches!(
            caller(&other_audience, "cluster.local"),
            Err(AuthError::WrongAudience)
        ));
        let not_a_service_account = review(TokenReviewStatus {
            authenticated: Some(true),
            user: Some(UserInfo {
                username: Some("alice".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(matches!(
            caller(&not_a_service_account, "cluster.local"),
            Err(AuthError::NoServiceAccount)
        ));
        assert!(caller(&TokenReview::default(), "cluster.local").is_err());
    }

    #[test]
    fn a_tokens_life_comes_from_its_exp() {
        let in_an_hour = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3000)
            .unwrap_or_default();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"exp\": {in_an_hour}}}"));
        let life = expires_in(&format!("h.{payload}.s")).expect("a life");
        assert!(life > Duration::from_secs(2900) && life <= Duration::from_secs(3000));
        assert_eq!(expires_in("not-a-jwt"), None);
        let past = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{\"exp\": 1}");
        assert_eq!(expires_in(&format!("h.{past}.s")), None);
    }
}
