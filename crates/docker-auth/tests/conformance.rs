//! Every `keyring` case of the kubelet conformance data: docker config keys, normalised
//! and matched as the kubelet's keyring does.

use icp_docker_auth::keyring::{key_serves, normalize_key};
use icp_test_kit::conformance::{self, MatchCase};

#[test]
fn keys_serve_images_as_in_the_kubelet_keyring() {
    let cases = conformance::match_cases();
    let keyring: Vec<&MatchCase> = cases.iter().filter(|c| c.via == "keyring").collect();
    assert!(
        keyring.len() >= 49,
        "only {} keyring cases found",
        keyring.len()
    );
    for case in keyring {
        let key = normalize_key(&case.pattern).unwrap();
        assert_eq!(
            key_serves(&key, &case.image),
            case.expected,
            "key {:?} for image {:?}",
            case.pattern,
            case.image
        );
    }
}
