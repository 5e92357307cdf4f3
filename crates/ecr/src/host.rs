//! Strict parsing of ECR registry host names: which account, region, partition and endpoint
//! variant a host belongs to, and refusal of everything that only looks like one.

use std::fmt;

/// The kubelet globs of the embedded default rule: every ECR registry host of every
/// partition, FIPS and dual-stack included, and ECR Public. They are coarse on purpose;
/// [`EcrHost::parse`] is the strict check.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.dkr.ecr*.*.amazonaws.com",
    "*.dkr.ecr*.*.amazonaws.com.cn",
    "*.dkr.ecr*.*.amazonaws.eu",
    "*.dkr.ecr*.*.c2s.ic.gov",
    "*.dkr.ecr*.*.sc2s.sgov.gov",
    "*.dkr.ecr*.*.cloud.adc-e.uk",
    "*.dkr.ecr*.*.csp.hci.ic.gov",
    "*.dkr-ecr*.*.on.aws",
    "*.dkr-ecr*.*.on.amazonwebservices.com.cn",
    PUBLIC_HOST,
    PUBLIC_DUAL_STACK_HOST,
];

/// The ECR Public registry.
pub const PUBLIC_HOST: &str = "public.ecr.aws";
/// The dual-stack (IPv4 and IPv6) name of the ECR Public registry.
pub const PUBLIC_DUAL_STACK_HOST: &str = "ecr-public.aws.com";
/// The only region ECR Public hands out tokens in.
pub const PUBLIC_REGION: &str = "us-east-1";

/// The first labels of the `aws` partition's region names (`us-east-1`, `mx-central-1`).
/// A region name with another prefix, in no other partition's pattern, is in no known
/// partition and refused: docs/rules.md says so, with this list.
pub const AWS_REGION_PREFIXES: &[&str] = &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"];

/// An AWS partition: a separate set of regions with its own domains and accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    /// `aws`: the commercial regions.
    Aws,
    /// `aws-cn`: China.
    AwsCn,
    /// `aws-us-gov`: AWS GovCloud (US).
    AwsUsGov,
    /// `aws-iso`: US ISO East and West.
    AwsIso,
    /// `aws-iso-b`: US ISOB.
    AwsIsoB,
    /// `aws-iso-e`: EU ISOE.
    AwsIsoE,
    /// `aws-iso-f`: US ISOF.
    AwsIsoF,
    /// `aws-eusc`: the AWS European Sovereign Cloud.
    AwsEusc,
}

impl Partition {
    /// The partition a region name belongs to, by the partitions' region name patterns;
    /// `None` for a string that is no region name.
    pub fn of_region(region: &str) -> Option<Partition> {
        let labels: Vec<&str> = region.split('-').collect();
        let well_formed = labels.len() >= 3
            && labels.iter().all(|l| !l.is_empty())
            && labels[..labels.len() - 1]
                .iter()
                .all(|l| l.bytes().all(|b| b.is_ascii_lowercase()))
            && labels[labels.len() - 1].len() <= 2
            && labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return None;
        }
        let middle = &labels[1..labels.len() - 1];
        match (labels[0], middle) {
            ("cn", [_]) => Some(Partition::AwsCn),
            ("us", ["gov", _]) => Some(Partition::AwsUsGov),
            ("us", ["iso", _]) => Some(Partition::AwsIso),
            ("us", ["isob", _]) => Some(Partition::AwsIsoB),
            ("us", ["isof", _]) => Some(Partition::AwsIsoF),
            ("eu", ["isoe", _]) => Some(Partition::AwsIsoE),
            ("eusc", ["de", _]) => Some(Partition::AwsEusc),
            (prefix, [_]) if AWS_REGION_PREFIXES.contains(&prefix) => Some(Partition::Aws),
            _ => None,
        }
    }

    /// The partition's name, as in an ARN (`aws`, `aws-cn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
            Partition::AwsEusc => "aws-eusc",
        }
    }

    /// The DNS suffix of the partition's IPv4-only ECR registry hosts.
    fn domain(self) -> &'static str {
        match self {
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::AwsIso => "c2s.ic.gov",
            Partition::AwsIsoB => "sc2s.sgov.gov",
            Partition::AwsIsoE => "cloud.adc-e.uk",
            Partition::AwsIsoF => "csp.hci.ic.gov",
            Partition::AwsEusc => "amazonaws.eu",
        }
    }

    /// The DNS suffix of the partition's dual-stack ECR registry hosts, where it has them.
    fn dual_stack_domain(self) -> Option<&'static str> {
        match self {
            Partition::Aws | Partition::AwsUsGov => Some("on.aws"),
            Partition::AwsCn => Some("on.amazonwebservices.com.cn"),
            _ => None,
        }
    }

    /// Whether the partition has FIPS endpoints for ECR.
    fn has_fips(self) -> bool {
        self != Partition::AwsCn
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated ECR registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcrHost {
    /// A private registry, `<account>.dkr.ecr.<region>.<domain>` or one of its variants.
    Private {
        /// The 12-digit account id.
        account: String,
        /// The region, as in `eu-west-1`.
        region: String,
        /// The partition the region is in.
        partition: Partition,
        /// Whether the host is a FIPS one (`dkr.ecr-fips`, `dkr-ecr-fips`), which is then
        /// served through the FIPS API endpoint.
        fips: bool,
        /// Whether the host is a dual-stack one (`dkr-ecr.<region>.on.aws`), which is then
        /// served through the dual-stack API endpoint.
        dual_stack: bool,
    },
    /// ECR Public (`public.ecr.aws`, or `ecr-public.aws.com` when `dual_stack`).
    Public {
        /// Whether the host is the dual-stack name.
        dual_stack: bool,
    },
}

impl EcrHost {
    /// Parses a registry host (no port, no path). Anything that is not exactly an ECR
    /// registry host name is `None`: wrong label count, a suffix of another domain, an
    /// account that is not 12 digits, a region of another partition, uppercase, a port.
    pub fn parse(host: &str) -> Option<EcrHost> {
        match host {
            PUBLIC_HOST => return Some(EcrHost::Public { dual_stack: false }),
            PUBLIC_DUAL_STACK_HOST => return Some(EcrHost::Public { dual_stack: true }),
            _ => {}
        }
        let (account, rest) = host.split_once('.')?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (service, dual_stack, rest) = if let Some(rest) = rest.strip_prefix("dkr.") {
            let (service, rest) = rest.split_once('.')?;
            (service.strip_prefix("ecr")?, false, rest)
        } else {
            let (service, rest) = rest.split_once('.')?;
            (service.strip_prefix("dkr-ecr")?, true, rest)
        };
        let fips = match service {
            "" => false,
            "-fips" => true,
            _ => return None,
        };
        let (region, domain) = rest.split_once('.')?;
        let partition = Partition::of_region(region)?;
        let expected = if dual_stack {
            partition.dual_stack_domain()?
        } else {
            partition.domain()
        };
        if domain != expected || (fips && !partition.has_fips()) {
            return None;
        }
        Some(EcrHost::Private {
            account: account.to_owned(),
            region: region.to_owned(),
            partition,
            fips,
            dual_stack,
        })
    }

    /// What one token is good for: every host of the same account and region (and FIPS
    /// or not) shares it; ECR Public has one token for both its names.
    pub fn scope(&self) -> String {
        match self {
            EcrHost::Private {
                account,
                region,
                partition,
                fips,
                ..
            } => {
                let fips = if *fips { ":fips" } else { "" };
                format!("ecr:{partition}:{region}:{account}{fips}")
            }
            EcrHost::Public { .. } => format!("ecr-public:aws:{PUBLIC_REGION}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::Pattern;

    fn private(
        account: &str,
        region: &str,
        partition: Partition,
        fips: bool,
        dual_stack: bool,
    ) -> Option<EcrHost> {
        Some(EcrHost::Private {
            account: account.into(),
            region: region.into(),
            partition,
            fips,
            dual_stack,
        })
    }

    const ACCOUNT: &str = "123456789012";

    #[test]
    fn accepts_every_partition_and_variant() {
        use Partition::*;
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                private(ACCOUNT, "us-east-1", Aws, false, false),
            ),
            (
                "123456789012.dkr.ecr.ap-southeast-7.amazonaws.com",
                private(ACCOUNT, "ap-southeast-7", Aws, false, false),
            ),
            (
                "123456789012.dkr.ecr.il-central-1.amazonaws.com",
                private(ACCOUNT, "il-central-1", Aws, false, false),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com",
                private(ACCOUNT, "us-east-2", Aws, true, false),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                private(ACCOUNT, "eu-west-1", Aws, false, true),
            ),
            (
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                private(ACCOUNT, "us-west-2", Aws, true, true),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                private(ACCOUNT, "cn-north-1", AwsCn, false, false),
            ),
            (
                "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                private(ACCOUNT, "cn-northwest-1", AwsCn, false, true),
            ),
            (
                "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
                private(ACCOUNT, "us-gov-west-1", AwsUsGov, false, false),
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
                private(ACCOUNT, "us-gov-east-1", AwsUsGov, true, false),
            ),
            (
                "123456789012.dkr-ecr.us-gov-west-1.on.aws",
                private(ACCOUNT, "us-gov-west-1", AwsUsGov, false, true),
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                private(ACCOUNT, "us-iso-east-1", AwsIso, false, false),
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                private(ACCOUNT, "us-isob-east-1", AwsIsoB, false, false),
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                private(ACCOUNT, "eu-isoe-west-1", AwsIsoE, false, false),
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                private(ACCOUNT, "us-isof-south-1", AwsIsoF, false, false),
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                private(ACCOUNT, "eusc-de-east-1", AwsEusc, false, false),
            ),
            (
                "public.ecr.aws",
                Some(EcrHost::Public { dual_stack: false }),
            ),
            (
                "ecr-public.aws.com",
                Some(EcrHost::Public { dual_stack: true }),
            ),
        ];
        for (host, expected) in cases {
            assert_eq!(EcrHost::parse(host), expected, "{host}");
            let image = format!("{host}/team/app");
            assert!(
                DEFAULT_PATTERNS
                    .iter()
                    .any(|p| Pattern::parse(p).unwrap().matches(&image)),
                "no default pattern matches {host}"
            );
        }
    }

    #[test]
    fn refuses_look_alikes() {
        let hostile = [
            // A suffix of somebody else's domain.
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.evil.example",
            "public.ecr.aws.evil.example",
            "123456789012.dkr-ecr.us-east-1.on.aws.evil.example",
            // Somebody else's domain in front.
            "evil.example.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "evil.public.ecr.aws",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            // Account that is not 12 digits.
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "evil.dkr.ecr.us-east-1.amazonaws.com",
            "+12345678901.dkr.ecr.us-east-1.amazonaws.com",
            // A port or a trailing dot.
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.",
            // Uppercase.
            "123456789012.DKR.ECR.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.US-EAST-1.amazonaws.com",
            "PUBLIC.ECR.AWS",
            // A service label that is not ECR's.
            "123456789012.dkr.ecrx.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr-fipsy.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.on.aws",
            "123456789012.ecr.us-east-1.amazonaws.com",
            "123456789012.dkrecr.us-east-1.amazonaws.com",
            // A region that is no region, or of another partition than the domain.
            "123456789012.dkr.ecr.evil.amazonaws.com",
            "123456789012.dkr.ecr.us-east.amazonaws.com",
            "123456789012.dkr.ecr.us-east-123.amazonaws.com",
            "123456789012.dkr.ecr.xx-east-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            "123456789012.dkr.ecr.us-iso-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.c2s.ic.gov",
            "123456789012.dkr.ecr.us--1.amazonaws.com",
            // Variants a partition does not have.
            "123456789012.dkr.ecr-fips.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr-ecr.us-iso-east-1.on.aws",
            // Not even close.
            "amazonaws.com",
            "dkr.ecr.us-east-1.amazonaws.com",
            "ecr.aws",
            "",
        ];
        assert!(hostile.len() >= 10);
        for host in hostile {
            assert_eq!(
                EcrHost::parse(host),
                None,
                "{host:?} must not parse as an ECR host"
            );
        }
    }

    #[test]
    fn partitions_of_regions() {
        use Partition::*;
        let cases = [
            ("us-east-1", Some(Aws)),
            ("mx-central-1", Some(Aws)),
            ("cn-northwest-1", Some(AwsCn)),
            ("us-gov-east-1", Some(AwsUsGov)),
            ("us-iso-west-1", Some(AwsIso)),
            ("us-isob-east-1", Some(AwsIsoB)),
            ("eu-isoe-west-1", Some(AwsIsoE)),
            ("us-isof-east-1", Some(AwsIsoF)),
            ("eusc-de-east-1", Some(AwsEusc)),
            ("us-east-1a", None),
            ("useast1", None),
            ("us-east-", None),
            ("us-gov-1", Some(Aws)),
            ("zz-east-1", None),
            ("us-foo-bar-1", None),
        ];
        for (region, expected) in cases {
            assert_eq!(Partition::of_region(region), expected, "{region}");
        }
    }

    #[test]
    fn a_region_in_no_known_partition_is_refused_as_the_rules_reference_says() {
        for region in ["nz-north-1", "xx-east-1", "us-newiso-east-1"] {
            assert_eq!(Partition::of_region(region), None, "{region}");
            let host = format!("{ACCOUNT}.dkr.ecr.{region}.amazonaws.com");
            assert_eq!(EcrHost::parse(&host), None, "{host}");
        }
        let reference =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md"))
                .unwrap();
        let section = reference
            .split("### ecr backend")
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .unwrap();
        let note = section
            .split("- **Region names.**")
            .nth(1)
            .and_then(|rest| rest.split("\n- ").next())
            .expect("the ecr section has a note on region names")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for prefix in AWS_REGION_PREFIXES {
            assert!(note.contains(&format!("`{prefix}-`")), "{prefix}: {note}");
            assert_eq!(
                Partition::of_region(&format!("{prefix}-east-1")),
                Some(Partition::Aws)
            );
        }
        for prefix in [
            "cn-", "us-gov-", "us-iso-", "us-isob-", "us-isof-", "eu-isoe-", "eusc-de-",
        ] {
            assert!(note.contains(&format!("`{prefix}`")), "{prefix}: {note}");
        }
        assert!(
            note.contains("A region name in no known partition is refused"),
            "{note}"
        );
    }

    #[test]
    fn scope_is_shared_by_every_host_of_an_account_and_region() {
        let scope = |host: &str| EcrHost::parse(host).unwrap().scope();
        assert_eq!(
            scope("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            scope("123456789012.dkr-ecr.eu-west-1.on.aws")
        );
        assert_ne!(
            scope("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            scope("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com")
        );
        assert_ne!(
            scope("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            scope("210987654321.dkr.ecr.us-east-1.amazonaws.com")
        );
        assert_ne!(
            scope("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            scope("123456789012.dkr.ecr.us-east-2.amazonaws.com")
        );
        assert_eq!(scope("public.ecr.aws"), scope("ecr-public.aws.com"));
    }
}
