//! ECR registry hosts: which region (and so which token) serves an image host.

/// A registry the pull secret must cover, parsed from its host name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RegistryHost {
    /// The bare host, as written in `auths` (no scheme: some runtimes fail to match one).
    pub host: String,
    /// The region whose token serves it (`us-east-1` for ECR Public).
    pub region: String,
    /// ECR Public (`public.ecr.aws`) takes its token from the ecr-public API.
    pub public: bool,
}

/// The ECR Public registry host.
pub(crate) const PUBLIC_HOST: &str = "public.ecr.aws";

impl RegistryHost {
    /// Accepts `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, the dual-stack
    /// `<account>.dkr-ecr[-fips].<region>.on.aws`, and `public.ecr.aws`. A scheme or
    /// trailing slash is tolerated and dropped.
    pub(crate) fn parse(input: &str) -> Option<RegistryHost> {
        let host = input
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if host == PUBLIC_HOST {
            return Some(RegistryHost {
                host,
                region: "us-east-1".to_string(),
                public: true,
            });
        }
        let labels: Vec<&str> = host.split('.').collect();
        let account = labels.first()?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let region = match labels.as_slice() {
            [_, "dkr", "ecr" | "ecr-fips", region, "amazonaws", "com"]
            | [_, "dkr", "ecr" | "ecr-fips", region, "amazonaws", "com", "cn"]
            | [_, "dkr-ecr" | "dkr-ecr-fips", region, "on", "aws"] => *region,
            _ => return None,
        };
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return None;
        }
        Some(RegistryHost {
            region: region.to_string(),
            host,
            public: false,
        })
    }

    /// The host of an ECR `proxyEndpoint` (`https://<acct>.dkr.ecr.<region>.amazonaws.com`).
    pub(crate) fn from_proxy_endpoint(endpoint: &str) -> Option<RegistryHost> {
        RegistryHost::parse(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_fips_dualstack_and_public() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                Some("us-east-1"),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                Some("us-gov-west-1"),
            ),
            ("123456789012.dkr-ecr.eu-west-1.on.aws", Some("eu-west-1")),
            (
                "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
                Some("us-east-1"),
            ),
            ("public.ecr.aws", Some("us-east-1")),
            ("12345.dkr.ecr.us-east-1.amazonaws.com", None),
            ("docker.io", None),
            ("123456789012.dkr.ecr..amazonaws.com", None),
            ("123456789012.dkr.ecr.us-east-1.evil.com", None),
        ];
        for (input, region) in cases {
            assert_eq!(
                RegistryHost::parse(input).map(|r| r.region),
                region.map(str::to_string),
                "{input}"
            );
        }
        let h =
            RegistryHost::parse("https://123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(h.host, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert!(RegistryHost::parse("public.ecr.aws").unwrap().public);
    }
}
