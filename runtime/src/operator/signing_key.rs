//! The daemon's signing key ([`SigningKey`]): kept in a Secret of the
//! daemon's own namespace, made with a fresh random key on first start.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::core::provenance::{KEY_ENTRY, SigningKey, random_key};

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing key Secret {secret}: cannot read it")]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("signing key Secret {secret}: cannot create it")]
    Create {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("signing key Secret {secret}: {message}")]
    Unusable { secret: String, message: String },
}

impl SigningKeyError {
    /// Worth trying again: the API server unreachable, throttling or failing.
    /// A refusal (RBAC's 403, say) or a Secret without a usable key is not.
    pub fn is_transient(&self) -> bool {
        match self {
            SigningKeyError::Read { source, .. } | SigningKeyError::Create { source, .. } => {
                !matches!(source, kube::Error::Api(status) if status.code < 500 && status.code != 429)
            }
            SigningKeyError::Unusable { .. } => false,
        }
    }
}

/// [`load_or_create_key`], tried again with backoff (eight times, up to about
/// a minute) while the API server is unreachable, throttling or failing: one
/// restarting when the pod starts is no reason to exit. A refusal is an error
/// at once.
pub async fn load_or_create_key_patiently(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<SigningKey, SigningKeyError> {
    use backon::Retryable;
    (|| load_or_create_key(client, namespace, name))
        .retry(
            backon::ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(500))
                .with_max_delay(std::time::Duration::from_secs(10))
                .with_max_times(8),
        )
        .sleep(tokio::time::sleep)
        .when(SigningKeyError::is_transient)
        .notify(|error, again_in| {
            tracing::warn!(
                "{}; trying again in {again_in:?}",
                crate::core::text::with_causes(error)
            )
        })
        .await
}

/// The daemon's key from the Secret `namespace/name`, which the daemon makes
/// with a fresh random key when it does not exist. Two replicas starting at
/// once race to create it; the loser reads the winner's.
pub async fn load_or_create_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<SigningKey, SigningKeyError> {
    let secret_name = format!("{namespace}/{name}");
    let failed = |message: String| SigningKeyError::Unusable {
        secret: secret_name.clone(),
        message,
    };
    let unreadable = |source| SigningKeyError::Read {
        secret: secret_name.clone(),
        source,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |secret: Secret| -> Result<SigningKey, SigningKeyError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(KEY_ENTRY))
            .ok_or_else(|| failed(format!("it has no data.{KEY_ENTRY}")))?;
        SigningKey::from_bytes(&bytes.0).map_err(failed)
    };
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => return read(secret),
        Ok(None) => {}
        Err(error) => return Err(unreadable(error)),
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "kubeskippy".to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: Some([(KEY_ENTRY.to_string(), ByteString(random_key().to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            tracing::info!(secret = %secret_name, "created the HealingAction signing key");
            read(created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => match secrets.get(name).await {
            Ok(secret) => read(secret),
            Err(error) => Err(unreadable(error)),
        },
        Err(source) => Err(SigningKeyError::Create {
            secret: secret_name.clone(),
            source,
        }),
    }
}
