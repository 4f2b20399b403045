//! Which HealingActions the daemon made, and which of their records it wrote.
//!
//! The daemon holds rights over workloads that the people who can write a
//! HealingAction may lack. So it runs only the HealingActions it planned
//! itself: each one it creates carries an HMAC-SHA256 of its identity and spec
//! ([`SIGNATURE`]) under a key only the daemon can read (a Secret in its own
//! namespace, made on first start by the operator). A HealingAction written by anyone else, or
//! one whose spec was changed after the daemon signed it, has no valid
//! signature and is refused before anything else is looked at. Every status
//! the daemon writes is sealed the same way, so a status edit (a finished
//! action set back to Approved, a rollback record pointed elsewhere) is not
//! acted on.
//!
//! [`spec_digest`] is the unkeyed sha256 of a spec, which an approval records:
//! a decision counts for the content it was given on, and nothing else.

use std::sync::Arc;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::core::crd::healing_action::{HealingAction, HealingActionSpec, HealingActionStatus};

/// The annotation holding a HealingAction's signature.
pub const SIGNATURE: &str = "kubeskippy.io/signature";
/// The signature format, so a future one can be told apart.
const SCHEME: &str = "v1.";
/// The key's entry in its Secret.
pub const KEY_ENTRY: &str = "key";
pub const KEY_BYTES: usize = 32;

/// Why a HealingAction or a record is not the daemon's own.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Untrusted {
    #[error(
        "not planned by KubeSkippy: it has no {SIGNATURE} annotation, and the daemon runs only the HealingActions it planned itself"
    )]
    Unsigned,
    #[error(
        "its {SIGNATURE} does not match its spec: it was written or changed by someone other than the daemon (or under an older signing key)"
    )]
    BadSignature,
    #[error("its status was written by someone other than the daemon (the seal does not match)")]
    BadStatus,
}

/// The daemon's HMAC key. Cloning shares it.
#[derive(Clone)]
pub struct SigningKey {
    key: Arc<hmac::Key>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// The spec as it is signed and digested: without the approval, which is
/// written after signing, by someone else.
fn canonical_spec(spec: &HealingActionSpec) -> Vec<u8> {
    let mut spec = spec.clone();
    spec.approval = None;
    serde_json::to_vec(&spec).expect("a spec serialises")
}

fn identity(action: &HealingAction) -> (&str, &str) {
    (
        action.metadata.namespace.as_deref().unwrap_or_default(),
        action.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The sha256 of `spec` without its approval, in hex: what an approval is
/// given for.
pub fn spec_digest(spec: &HealingActionSpec) -> String {
    hex::encode(Sha256::digest(canonical_spec(spec)))
}

impl SigningKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey, String> {
        if bytes.len() < KEY_BYTES {
            return Err(format!(
                "the key has {} bytes; at least {KEY_BYTES} are needed",
                bytes.len()
            ));
        }
        Ok(SigningKey {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
        })
    }

    /// A fresh random key.
    pub fn generate() -> SigningKey {
        SigningKey::from_bytes(&random_key()).expect("a generated key is long enough")
    }

    fn tag(&self, parts: &[&[u8]]) -> String {
        let tag = hmac::sign(&self.key, &message(parts));
        format!("{SCHEME}{}", hex::encode(tag.as_ref()))
    }

    fn check(&self, parts: &[&[u8]], signature: &str) -> bool {
        let Some(expected) = signature
            .strip_prefix(SCHEME)
            .and_then(|encoded| hex::decode(encoded).ok())
        else {
            return false;
        };
        hmac::verify(&self.key, &message(parts), &expected).is_ok()
    }

    fn action_parts(action: &HealingAction) -> [Vec<u8>; 4] {
        let (namespace, name) = identity(action);
        [
            b"HealingAction".to_vec(),
            namespace.as_bytes().to_vec(),
            name.as_bytes().to_vec(),
            canonical_spec(&action.spec),
        ]
    }

    /// Signs `action` (its namespace, name and spec without the approval) by
    /// setting its [`SIGNATURE`] annotation.
    pub fn sign(&self, action: &mut HealingAction) {
        let parts = Self::action_parts(action);
        let signature = self.tag(&parts.each_ref().map(Vec::as_slice));
        action
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SIGNATURE.into(), signature);
    }

    /// Whether `action` is one this key signed, unchanged since.
    pub fn verify(&self, action: &HealingAction) -> Result<(), Untrusted> {
        let signature = action
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(SIGNATURE))
            .ok_or(Untrusted::Unsigned)?;
        let parts = Self::action_parts(action);
        if self.check(&parts.each_ref().map(Vec::as_slice), signature) {
            Ok(())
        } else {
            Err(Untrusted::BadSignature)
        }
    }

    fn status_parts(action: &HealingAction, status: &HealingActionStatus) -> [Vec<u8>; 5] {
        let (namespace, name) = identity(action);
        [
            b"HealingActionStatus".to_vec(),
            namespace.as_bytes().to_vec(),
            name.as_bytes().to_vec(),
            action
                .metadata
                .uid
                .as_deref()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            serde_json::to_vec(&Sealed::of(status)).expect("a status serialises"),
        ]
    }

    /// Seals `status` as the daemon writes it for `action` (which must exist,
    /// so the seal binds to its uid).
    pub fn seal_status(&self, action: &HealingAction, status: &mut HealingActionStatus) {
        let parts = Self::status_parts(action, status);
        status.seal = Some(self.tag(&parts.each_ref().map(Vec::as_slice)));
    }

    /// Whether `action`'s status is one the daemon wrote. No status at all
    /// (an action just created) is the daemon's too.
    pub fn check_status(&self, action: &HealingAction) -> Result<(), Untrusted> {
        let Some(status) = &action.status else {
            return Ok(());
        };
        let seal = status.seal.as_deref().ok_or(Untrusted::BadStatus)?;
        let parts = Self::status_parts(action, status);
        if self.check(&parts.each_ref().map(Vec::as_slice), seal) {
            Ok(())
        } else {
            Err(Untrusted::BadStatus)
        }
    }
}

/// What of a status the daemon acts on, as sealed: not the messages, which
/// the API server may echo back differently, nor a dry run's result.
#[derive(serde::Serialize)]
struct Sealed<'a> {
    phase: crate::core::crd::healing_action::Phase,
    attempts: u32,
    started_at: &'a Option<String>,
    completed_at: &'a Option<String>,
    retry_after: &'a Option<String>,
    dry_run: bool,
    approved_by: &'a Option<String>,
    rollback: &'a Option<Vec<crate::core::crd::healing_action::WrittenField>>,
    verification: &'a Option<crate::core::crd::healing_action::VerificationBaseline>,
    conditions: Vec<(&'a str, &'a str)>,
}

impl<'a> Sealed<'a> {
    fn of(status: &'a HealingActionStatus) -> Sealed<'a> {
        Sealed {
            phase: status.phase,
            attempts: status.attempts,
            started_at: &status.started_at,
            completed_at: &status.completed_at,
            retry_after: &status.retry_after,
            dry_run: status.dry_run,
            approved_by: &status.approved_by,
            rollback: &status.rollback,
            verification: &status.verification,
            conditions: status
                .conditions
                .iter()
                .map(|condition| (condition.type_.as_str(), condition.status.as_str()))
                .collect(),
        }
    }
}

/// The HealingActions the daemon planned or ran itself: only these count
/// towards cooldowns, open actions, rate limits, budgets and breakers, so a
/// hand-written one can neither spend nor block anyone's. One whose spec no
/// longer verifies (a defaced signature) but whose status the daemon wrote
/// still counts; one whose status someone else rewrote counts as running
/// since it was planned, so an edit can only hold healing back, never let
/// more through.
pub fn countable(key: &SigningKey, actions: &[Arc<HealingAction>]) -> Vec<Arc<HealingAction>> {
    actions
        .iter()
        .filter_map(|action| {
            let planned = key.verify(action).is_ok();
            let ran = action.status.is_some() && key.check_status(action).is_ok();
            match (planned, ran) {
                (_, true) => Some(action.clone()),
                (true, false) if action.status.is_none() => Some(action.clone()),
                (true, false) => {
                    let mut held = action.as_ref().clone();
                    held.status = Some(HealingActionStatus {
                        phase: crate::core::crd::healing_action::Phase::InProgress,
                        started_at: action.spec.planned_at.clone(),
                        ..HealingActionStatus::default()
                    });
                    Some(Arc::new(held))
                }
                (false, false) => None,
            }
        })
        .collect()
}

/// The parts, each prefixed with its length, so no two different sequences of
/// parts give the same message.
fn message(parts: &[&[u8]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(parts.iter().map(|part| part.len() + 8).sum());
    for part in parts {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part);
    }
    message
}

/// A fresh random key, for a new signing key Secret.
pub fn random_key() -> [u8; KEY_BYTES] {
    let mut bytes = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crd::healing_action::{Field, WrittenField};

    fn action() -> HealingAction {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeskippy.io/v1alpha1",
            "kind": "HealingAction",
            "metadata": {"name": "rule-restart-app-abc123", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "policyRef": {"kind": "HealingPolicy", "namespace": "shop", "name": "p", "uid": "p-1"},
                "incidentId": "shop-deployment-app-0011aabb",
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "app", "uid": "t-1"},
                "action": {"type": "restart", "restartAction": {"strategy": "rollout"}},
                "source": "rules", "confidence": 0.8, "reasoning": "r", "risk": "low",
                "plannedAt": "2026-03-14T09:00:00Z"
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_signed_action_verifies_and_any_change_to_it_does_not() {
        let key = SigningKey::generate();
        let mut signed = action();
        assert_eq!(key.verify(&signed), Err(Untrusted::Unsigned));
        key.sign(&mut signed);
        assert_eq!(key.verify(&signed), Ok(()));
        assert_eq!(
            SigningKey::generate().verify(&signed),
            Err(Untrusted::BadSignature)
        );

        let mut retargeted = signed.clone();
        retargeted.spec.target.namespace = "payments".into();
        assert_eq!(key.verify(&retargeted), Err(Untrusted::BadSignature));
        let mut renamed = signed.clone();
        renamed.metadata.namespace = Some("tenant-a".into());
        assert_eq!(key.verify(&renamed), Err(Untrusted::BadSignature));
        let mut loosened = signed.clone();
        loosened.spec.approval_required = true;
        assert_eq!(key.verify(&loosened), Err(Untrusted::BadSignature));

        // The approval is written after signing, by an approver.
        let mut approved = signed.clone();
        approved.spec.approval = Some(crate::core::crd::healing_action::Approval {
            decision: crate::core::crd::healing_action::ApprovalDecision::Approved,
            by: "alice".into(),
            at: "2026-03-14T09:01:00Z".into(),
            reason: None,
            spec_digest: spec_digest(&signed.spec),
        });
        assert_eq!(key.verify(&approved), Ok(()));
        assert_eq!(spec_digest(&approved.spec), spec_digest(&signed.spec));
    }

    #[test]
    fn a_status_seal_binds_what_the_daemon_acts_on_to_the_action() {
        let key = SigningKey::generate();
        let signed = action();
        assert_eq!(key.check_status(&signed), Ok(()), "no status yet");
        let mut status = HealingActionStatus {
            phase: crate::core::crd::healing_action::Phase::Succeeded,
            attempts: 1,
            rollback: Some(vec![WrittenField {
                field: Field::Replicas,
                previous: Some("2".into()),
                wrote: "3".into(),
            }]),
            ..HealingActionStatus::default()
        };
        key.seal_status(&signed, &mut status);
        let mut sealed = signed.clone();
        sealed.status = Some(status.clone());
        assert_eq!(key.check_status(&sealed), Ok(()));

        let mut reset = sealed.clone();
        reset.status.as_mut().unwrap().phase = crate::core::crd::healing_action::Phase::Approved;
        assert_eq!(key.check_status(&reset), Err(Untrusted::BadStatus));
        let mut repointed = sealed.clone();
        repointed
            .status
            .as_mut()
            .unwrap()
            .rollback
            .as_mut()
            .unwrap()[0]
            .previous = Some("0".into());
        assert_eq!(key.check_status(&repointed), Err(Untrusted::BadStatus));
        let mut copied = sealed.clone();
        copied.metadata.uid = Some("u-2".into());
        assert_eq!(key.check_status(&copied), Err(Untrusted::BadStatus));
        let mut unsealed = sealed.clone();
        unsealed.status.as_mut().unwrap().seal = None;
        assert_eq!(key.check_status(&unsealed), Err(Untrusted::BadStatus));
        // Messages are not sealed: the daemon does not act on them.
        let mut reworded = sealed;
        reworded.status.as_mut().unwrap().message = Some("anything".into());
        assert_eq!(key.check_status(&reworded), Ok(()));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(SigningKey::from_bytes(&[0; 16]).is_err());
    }
}
