//! Where each AWS call goes: region -> partition -> host, with FIPS and the
//! `AWS_ENDPOINT_URL*` overrides the SDKs honour. Pure functions: no network.

use super::env::AwsEnv;
use super::error::AwsError;

/// ECR Public lives only in us-east-1 and signs there.
pub(crate) const ECR_PUBLIC_REGION: &str = "us-east-1";
/// The registry host of every ECR Public token.
pub(crate) const ECR_PUBLIC_REGISTRY: &str = "public.ecr.aws";

/// An AWS partition: a set of regions sharing a DNS suffix and an IAM namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
}

// === impl Partition ===

impl Partition {
    /// The partition a region belongs to, from the region's prefix (as botocore's
    /// `regionRegex` does); unknown prefixes fall back to the commercial partition.
    pub(crate) fn of_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Self::AwsCn
        } else if region.starts_with("us-gov-") {
            Self::AwsUsGov
        } else if region.starts_with("us-isob-") {
            Self::AwsIsoB
        } else if region.starts_with("us-isof-") || region.starts_with("eu-isof-") {
            Self::AwsIsoF
        } else if region.starts_with("eu-isoe-") {
            Self::AwsIsoE
        } else if region.starts_with("us-iso-") {
            Self::AwsIso
        } else {
            Self::Aws
        }
    }

    /// The DNS suffix of the partition's regional endpoints.
    pub(crate) fn dns_suffix(self) -> &'static str {
        match self {
            Self::Aws | Self::AwsUsGov => "amazonaws.com",
            Self::AwsCn => "amazonaws.com.cn",
            Self::AwsIso => "c2s.ic.gov",
            Self::AwsIsoB => "sc2s.sgov.gov",
            Self::AwsIsoE => "cloud.adc-e.uk",
            Self::AwsIsoF => "csp.hci.ic.gov",
        }
    }
}

/// A resolved endpoint: the base URL (no trailing slash) plus what to sign it as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub url: String,
    pub signing_region: String,
    pub signing_service: &'static str,
}

/// Endpoint settings taken from the environment; fields are public so a config file or
/// a CR can override them too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub use_fips: bool,
    pub ecr_url: Option<String>,
    pub ecr_public_url: Option<String>,
    pub sts_url: Option<String>,
    pub rolesanywhere_url: Option<String>,
    /// AWS_ENDPOINT_URL: applies to every service without its own override.
    pub any_url: Option<String>,
}

/// Checks that an override is an absolute http(s) URL and trims the trailing slash.
fn checked_override(setting: &str, url: Option<&str>) -> Result<Option<String>, AwsError> {
    let Some(url) = url else { return Ok(None) };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| AwsError::config(setting, format!("{url:?} is not a URL: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(Some(url.trim_end_matches('/').to_string())),
        _ => Err(AwsError::config(
            setting,
            format!("{url:?} must be an absolute http:// or https:// URL"),
        )),
    }
}

/// A region is a short DNS label sequence; anything else would build a hostile host name.
pub(crate) fn validate_region(region: &str) -> Result<(), AwsError> {
    let ok = !region.is_empty()
        && region.len() <= 63
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AwsError::config(
            "region",
            format!("{region:?} is not an AWS region name"),
        ))
    }
}

// === impl Endpoints ===

impl Endpoints {
    /// Reads AWS_USE_FIPS_ENDPOINT and the AWS_ENDPOINT_URL* overrides.
    pub(crate) fn from_env(env: &AwsEnv) -> Result<Self, AwsError> {
        Ok(Self {
            use_fips: env.flag("AWS_USE_FIPS_ENDPOINT"),
            ecr_url: checked_override("AWS_ENDPOINT_URL_ECR", env.get("AWS_ENDPOINT_URL_ECR"))?,
            ecr_public_url: checked_override(
                "AWS_ENDPOINT_URL_ECR_PUBLIC",
                env.get("AWS_ENDPOINT_URL_ECR_PUBLIC"),
            )?,
            sts_url: checked_override("AWS_ENDPOINT_URL_STS", env.get("AWS_ENDPOINT_URL_STS"))?,
            rolesanywhere_url: checked_override(
                "AWS_ENDPOINT_URL_ROLESANYWHERE",
                env.get("AWS_ENDPOINT_URL_ROLESANYWHERE"),
            )?,
            any_url: checked_override("AWS_ENDPOINT_URL", env.get("AWS_ENDPOINT_URL"))?,
        })
    }

    /// Every endpoint at `url` (tests and emulators).
    #[cfg(test)]
    pub(crate) fn all_at(url: &str) -> Self {
        Self {
            any_url: Some(url.trim_end_matches('/').to_string()),
            ..Self::default()
        }
    }

    fn overridden(&self, specific: &Option<String>) -> Option<String> {
        specific.clone().or_else(|| self.any_url.clone())
    }

    /// ECR private: `https://api.ecr.{region}.{suffix}`, or with FIPS
    /// `https://ecr-fips.{region}.{suffix}` (the host the current SDKs use).
    pub(crate) fn ecr(&self, region: &str) -> Result<Endpoint, AwsError> {
        validate_region(region)?;
        let suffix = Partition::of_region(region).dns_suffix();
        let url = self.overridden(&self.ecr_url).unwrap_or_else(|| {
            if self.use_fips {
                format!("https://ecr-fips.{region}.{suffix}")
            } else {
                format!("https://api.ecr.{region}.{suffix}")
            }
        });
        Ok(Endpoint {
            url,
            signing_region: region.to_string(),
            signing_service: "ecr",
        })
    }

    /// ECR Public: a single endpoint in us-east-1 whatever the caller's region.
    pub(crate) fn ecr_public(&self) -> Endpoint {
        let url = self
            .overridden(&self.ecr_public_url)
            .unwrap_or_else(|| format!("https://api.ecr-public.{ECR_PUBLIC_REGION}.amazonaws.com"));
        Endpoint {
            url,
            signing_region: ECR_PUBLIC_REGION.to_string(),
            signing_service: "ecr-public",
        }
    }

    /// STS regional endpoint `https://sts.{region}.{suffix}` (FIPS: `sts-fips`). Regional
    /// rather than global so IRSA keeps working when us-east-1 has trouble.
    pub(crate) fn sts(&self, region: &str) -> Result<Endpoint, AwsError> {
        validate_region(region)?;
        let suffix = Partition::of_region(region).dns_suffix();
        let url = self.overridden(&self.sts_url).unwrap_or_else(|| {
            let service = if self.use_fips { "sts-fips" } else { "sts" };
            format!("https://{service}.{region}.{suffix}")
        });
        Ok(Endpoint {
            url,
            signing_region: region.to_string(),
            signing_service: "sts",
        })
    }

    /// IAM Roles Anywhere `https://rolesanywhere.{region}.{suffix}` (FIPS:
    /// `rolesanywhere-fips`), in the trust anchor's region.
    pub(crate) fn rolesanywhere(&self, region: &str) -> Result<Endpoint, AwsError> {
        validate_region(region)?;
        let suffix = Partition::of_region(region).dns_suffix();
        let url = self.overridden(&self.rolesanywhere_url).unwrap_or_else(|| {
            let service = if self.use_fips {
                "rolesanywhere-fips"
            } else {
                "rolesanywhere"
            };
            format!("https://{service}.{region}.{suffix}")
        });
        Ok(Endpoint {
            url,
            signing_region: region.to_string(),
            signing_service: "rolesanywhere",
        })
    }
}

/// The registry host of a `proxyEndpoint` such as `https://1234.dkr.ecr.eu-west-1.amazonaws.com`.
pub(crate) fn registry_host(proxy_endpoint: &str) -> &str {
    let rest = proxy_endpoint
        .strip_prefix("https://")
        .or_else(|| proxy_endpoint.strip_prefix("http://"))
        .unwrap_or(proxy_endpoint);
    rest.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_their_partition() {
        let cases = [
            ("eu-west-1", Partition::Aws, "amazonaws.com"),
            ("us-east-1", Partition::Aws, "amazonaws.com"),
            ("cn-north-1", Partition::AwsCn, "amazonaws.com.cn"),
            ("cn-northwest-1", Partition::AwsCn, "amazonaws.com.cn"),
            ("us-gov-west-1", Partition::AwsUsGov, "amazonaws.com"),
            ("us-iso-east-1", Partition::AwsIso, "c2s.ic.gov"),
            ("us-isob-east-1", Partition::AwsIsoB, "sc2s.sgov.gov"),
            ("eu-isoe-west-1", Partition::AwsIsoE, "cloud.adc-e.uk"),
            ("us-isof-south-1", Partition::AwsIsoF, "csp.hci.ic.gov"),
        ];
        for (region, partition, suffix) in cases {
            assert_eq!(Partition::of_region(region), partition, "{region}");
            assert_eq!(partition.dns_suffix(), suffix, "{region}");
        }
    }

    #[test]
    fn ecr_endpoint_per_partition() {
        let e = Endpoints::default();
        assert_eq!(
            e.ecr("eu-west-1").unwrap().url,
            "https://api.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            e.ecr("cn-north-1").unwrap().url,
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            e.ecr("us-gov-east-1").unwrap().url,
            "https://api.ecr.us-gov-east-1.amazonaws.com"
        );
        assert_eq!(
            e.ecr("us-iso-east-1").unwrap().url,
            "https://api.ecr.us-iso-east-1.c2s.ic.gov"
        );
        let ep = e.ecr("ap-south-2").unwrap();
        assert_eq!(
            (ep.signing_region.as_str(), ep.signing_service),
            ("ap-south-2", "ecr")
        );
    }

    #[test]
    fn fips_switches_ecr_and_sts_hosts() {
        let env = AwsEnv::from_pairs(&[("AWS_USE_FIPS_ENDPOINT", "true")]);
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(
            e.ecr("us-east-1").unwrap().url,
            "https://ecr-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            e.ecr("us-gov-west-1").unwrap().url,
            "https://ecr-fips.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            e.sts("us-east-2").unwrap().url,
            "https://sts-fips.us-east-2.amazonaws.com"
        );
    }

    #[test]
    fn sts_is_regional() {
        let e = Endpoints::default();
        assert_eq!(
            e.sts("eu-central-1").unwrap().url,
            "https://sts.eu-central-1.amazonaws.com"
        );
        assert_eq!(
            e.sts("cn-north-1").unwrap().url,
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(e.sts("eu-central-1").unwrap().signing_service, "sts");
    }

    #[test]
    fn ecr_public_is_in_us_east_1_whatever_the_region() {
        let ep = Endpoints::default().ecr_public();
        assert_eq!(ep.url, "https://api.ecr-public.us-east-1.amazonaws.com");
        assert_eq!(
            (ep.signing_region.as_str(), ep.signing_service),
            ("us-east-1", "ecr-public")
        );
    }

    #[test]
    fn specific_override_beats_general_override_beats_default() {
        let env = AwsEnv::from_pairs(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/"),
            ("AWS_ENDPOINT_URL_ECR", "https://ecr.internal.example"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ]);
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(
            e.ecr("eu-west-1").unwrap().url,
            "https://ecr.internal.example"
        );
        assert_eq!(e.sts("eu-west-1").unwrap().url, "http://127.0.0.1:4566");
        assert_eq!(e.ecr_public().url, "http://127.0.0.1:4566");
        let env = AwsEnv::from_pairs(&[
            ("AWS_ENDPOINT_URL_STS", "http://sts.local:1"),
            ("AWS_ENDPOINT_URL_ECR_PUBLIC", "http://pub.local:2"),
        ]);
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(e.sts("eu-west-1").unwrap().url, "http://sts.local:1");
        assert_eq!(e.ecr_public().url, "http://pub.local:2");
        assert_eq!(
            e.ecr("eu-west-1").unwrap().url,
            "https://api.ecr.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn rolesanywhere_endpoint_per_partition_fips_and_override() {
        let e = Endpoints::default();
        let cases = [
            ("eu-west-1", "https://rolesanywhere.eu-west-1.amazonaws.com"),
            (
                "cn-north-1",
                "https://rolesanywhere.cn-north-1.amazonaws.com.cn",
            ),
            (
                "us-gov-west-1",
                "https://rolesanywhere.us-gov-west-1.amazonaws.com",
            ),
            (
                "us-iso-east-1",
                "https://rolesanywhere.us-iso-east-1.c2s.ic.gov",
            ),
            (
                "us-isob-east-1",
                "https://rolesanywhere.us-isob-east-1.sc2s.sgov.gov",
            ),
            (
                "eu-isoe-west-1",
                "https://rolesanywhere.eu-isoe-west-1.cloud.adc-e.uk",
            ),
            (
                "us-isof-south-1",
                "https://rolesanywhere.us-isof-south-1.csp.hci.ic.gov",
            ),
        ];
        for (region, url) in cases {
            let ep = e.rolesanywhere(region).unwrap();
            assert_eq!(ep.url, url);
            assert_eq!(
                (ep.signing_region.as_str(), ep.signing_service),
                (region, "rolesanywhere")
            );
        }
        let fips =
            Endpoints::from_env(&AwsEnv::from_pairs(&[("AWS_USE_FIPS_ENDPOINT", "true")])).unwrap();
        assert_eq!(
            fips.rolesanywhere("us-gov-east-1").unwrap().url,
            "https://rolesanywhere-fips.us-gov-east-1.amazonaws.com"
        );
        let env = AwsEnv::from_pairs(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_ROLESANYWHERE", "https://localhost:8443/"),
        ]);
        let e = Endpoints::from_env(&env).unwrap();
        assert_eq!(
            e.rolesanywhere("eu-west-1").unwrap().url,
            "https://localhost:8443"
        );
        assert_eq!(e.sts("eu-west-1").unwrap().url, "http://127.0.0.1:1");
        assert!(Endpoints::default()
            .rolesanywhere("eu-west-1.evil.com")
            .is_err());
        let bad = AwsEnv::from_pairs(&[("AWS_ENDPOINT_URL_ROLESANYWHERE", "ftp://x")]);
        assert!(Endpoints::from_env(&bad).is_err());
    }

    #[test]
    fn override_must_be_an_absolute_http_url() {
        for bad in ["ftp://x", "not a url", "/relative"] {
            let env = AwsEnv::from_pairs(&[("AWS_ENDPOINT_URL_ECR", bad)]);
            let err = Endpoints::from_env(&env).unwrap_err();
            assert!(err.to_string().contains("AWS_ENDPOINT_URL_ECR"), "{err}");
        }
    }

    #[test]
    fn hostile_region_names_are_refused() {
        for bad in ["", "eu-west-1.evil.com", "EU-WEST-1", "eu/west", "-eu"] {
            assert!(Endpoints::default().ecr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registry_host_strips_scheme_and_slash() {
        assert_eq!(
            registry_host("https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(registry_host("public.ecr.aws"), "public.ecr.aws");
    }
}
