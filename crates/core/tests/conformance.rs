//! Every `matchImages` / `URLsMatchStr` case of the kubelet conformance data.

use icp_core::Pattern;
use icp_core::pattern::urls_match_str;
use icp_test_kit::conformance;

#[test]
fn rule_patterns_match_as_the_kubelet_does() {
    let cases = conformance::match_cases();
    let mut checked = 0;
    for case in cases
        .iter()
        .filter(|c| c.via == "matchImages" || c.via == "URLsMatchStr")
    {
        let kubelet = urls_match_str(&case.pattern, &case.image).unwrap();
        assert_eq!(
            kubelet, case.expected,
            "urls_match_str({:?}, {:?})",
            case.pattern, case.image
        );
        let ours = Pattern::parse(&case.pattern).unwrap().matches(&case.image);
        assert_eq!(
            ours, case.expected,
            "Pattern({:?}).matches({:?})",
            case.pattern, case.image
        );
        checked += 1;
    }
    assert!(checked >= 29, "only {checked} cases found");
}
