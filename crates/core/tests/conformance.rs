//! Every `matchImages` / `URLsMatchStr` case of the kubelet conformance data.

use icp_core::Pattern;
use icp_core::pattern::urls_match_str;

#[derive(serde::Deserialize)]
struct Case {
    pattern: String,
    image: String,
    #[serde(rename = "match")]
    expected: bool,
    via: String,
}

#[test]
fn rule_patterns_match_as_the_kubelet_does() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/conformance/match_cases.json"
    );
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
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
