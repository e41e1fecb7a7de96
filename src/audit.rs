//! The audit log (SPEC §12): who changed what, and when. The store appends one entry to every
//! admin write, in the write's own transaction, so a change never lacks its entry nor an entry
//! its change. Nothing edits or deletes an entry but the retention (`admin.audit_retention_days`).

use serde::Serialize;

use crate::time::{Millis, rfc3339};

/// What an admin write did: an entry's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    TenantCreate,
    TenantUpdate,
    TenantDelete,
    KeyCreate,
    KeyImport,
    KeyUpdate,
    KeyRoll,
    KeyRevoke,
    KeyDelete,
    SigningKeyRotate,
    SigningKeyRetire,
}

impl AuditAction {
    pub const ALL: [Self; 11] = [
        Self::TenantCreate,
        Self::TenantUpdate,
        Self::TenantDelete,
        Self::KeyCreate,
        Self::KeyImport,
        Self::KeyUpdate,
        Self::KeyRoll,
        Self::KeyRevoke,
        Self::KeyDelete,
        Self::SigningKeyRotate,
        Self::SigningKeyRetire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantCreate => "tenant.create",
            Self::TenantUpdate => "tenant.update",
            Self::TenantDelete => "tenant.delete",
            Self::KeyCreate => "key.create",
            Self::KeyImport => "key.import",
            Self::KeyUpdate => "key.update",
            Self::KeyRoll => "key.roll",
            Self::KeyRevoke => "key.revoke",
            Self::KeyDelete => "key.delete",
            Self::SigningKeyRotate => "signing_key.rotate",
            Self::SigningKeyRetire => "signing_key.retire",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == raw)
    }
}

/// Who makes an admin write, and what it is: what the store records beside it. `actor` is the
/// admin token's name, or `cli:<OS user>` for the CLI on the store.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: AuditAction,
}

/// One entry as the admin API shows it. `before` and `after` are the wire objects of the
/// tenant, key or signing key (`null` for a create or a delete), never a secret or a hash.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    #[serde(with = "rfc3339")]
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<String>,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An entry's id is `aud_` and the number of its place in the log.
pub fn entry_id(seq: i64) -> String {
    format!("aud_{seq}")
}

/// The place in the log an id (a cursor) names.
pub fn entry_seq(id: &str) -> Option<i64> {
    let digits = id.strip_prefix("aud_")?;
    let ok = (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    if ok { digits.parse().ok() } else { None }
}

/// Which entries a list shows; every part is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<String>,
    pub target_id: Option<String>,
    pub action: Option<AuditAction>,
    /// At or after.
    pub since: Option<Millis>,
    /// At or before.
    pub until: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_and_ids_name_their_place() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("key.Create"), None);
        assert_eq!(entry_seq(&entry_id(42)), Some(42));
        for bad in ["aud_", "aud_-1", "aud_1x", "key_1", "aud_9999999999999999999"] {
            assert_eq!(entry_seq(bad), None, "{bad}");
        }
    }
}
