//! Whether a pod's service account token may go to a rule's backend: only when it carries
//! the audience the backend expects (its usual one, or the one its rule names), so that a
//! token minted for one cloud is never sent to another.

use icp_core::{ServiceAccount, ServiceAccountTokenUse, quote};

/// Fails unless `account`'s token carries `token_use.audience`, the audience the backend
/// `backend` (of the rule named `rule`: `rule 2`) expects; the message names both and the setting to fix.
pub fn check(
    account: &ServiceAccount,
    token_use: &ServiceAccountTokenUse,
    backend: &str,
    rule: &str,
) -> anyhow::Result<()> {
    let audiences = account.audiences();
    if audiences.contains(&token_use.audience) {
        return Ok(());
    }
    let carried: Vec<String> = audiences.iter().map(|a| quote(a)).collect();
    anyhow::bail!(
        "{backend} backend ({rule}): the service account token of {account} is for [{}], \
         not {} as the backend expects; not sent: the kubelet config's \
         tokenAttributes.serviceAccountTokenAudience must be the backend's audience (or the \
         rule's {backend}.audience the one the kubelet asks for)",
        carried.join(", "),
        quote(&token_use.audience)
    )
}
