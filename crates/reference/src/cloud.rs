//! Which registry hosts belong to which cloud, for `spec.provider`.
//!
//! A cloud credential is the scanner's own identity: it must only ever be
//! sent to that cloud's registry, never to a host an ImageRepository happens
//! to name, or applying a repository would hand the token to anyone. Flux
//! refuses a provider whose registry host does not match too. The rules are
//! the hosts the clouds document: ECR `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`,
//! Google `gcr.io`, `*.gcr.io` and `<location>-docker.pkg.dev`, Azure
//! `*.azurecr.io` (and the sovereign clouds' `.cn`, `.us`, `.de`).

use std::fmt;

/// A cloud whose registry credentials the scanner can obtain by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudProvider {
    /// Amazon ECR, from the AWS credentials chain.
    Aws,
    /// Google Container Registry and Artifact Registry.
    Gcp,
    /// Azure Container Registry.
    Azure,
}

impl CloudProvider {
    /// The provider a `spec.provider` value names; `None` for `generic`
    /// and anything else.
    pub fn from_spec(provider: &str) -> Option<Self> {
        match provider {
            "aws" => Some(Self::Aws),
            "gcp" => Some(Self::Gcp),
            "azure" => Some(Self::Azure),
            _ => None,
        }
    }

    /// The `spec.provider` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
        }
    }

    /// Whether `registry` (`host[:port]`) is one of this cloud's registries.
    pub fn serves(self, registry: &str) -> bool {
        let host = host_of(registry);
        match self {
            Self::Aws => ecr_region(registry).is_some(),
            Self::Gcp => {
                host == "gcr.io"
                    || host.ends_with(".gcr.io")
                    || host.strip_suffix("-docker.pkg.dev").is_some_and(is_label)
            }
            Self::Azure => [".azurecr.io", ".azurecr.cn", ".azurecr.us", ".azurecr.de"]
                .iter()
                .any(|suffix| host.strip_suffix(suffix).is_some_and(is_label)),
        }
    }

    /// What the registry host must look like, for error messages.
    pub fn expected_hosts(self) -> &'static str {
        match self {
            Self::Aws => "an ECR registry <account>.dkr.ecr.<region>.amazonaws.com",
            Self::Gcp => "gcr.io, <region>.gcr.io or <location>-docker.pkg.dev",
            Self::Azure => "<name>.azurecr.io",
        }
    }
}

impl fmt::Display for CloudProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The AWS region of an ECR registry host (`host[:port]`), `None` when the
/// host is not an ECR registry.
pub fn ecr_region(registry: &str) -> Option<&str> {
    let host = host_of(registry);
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let mut labels = rest.split('.');
    let account = labels.next()?;
    let dkr = labels.next()?;
    let ecr = labels.next()?;
    let region = labels.next()?;
    let well_formed = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && dkr == "dkr"
        && (ecr == "ecr" || ecr == "ecr-fips")
        && is_label(region)
        && labels.next().is_none();
    well_formed.then_some(region)
}

fn host_of(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_serves_only_its_own_registries() {
        use CloudProvider::*;
        for (provider, host, serves) in [
            (Aws, "123456789012.dkr.ecr.us-east-1.amazonaws.com", true),
            (
                Aws,
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                true,
            ),
            (
                Aws,
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                true,
            ),
            (
                Aws,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000",
                true,
            ),
            (Aws, "12345.dkr.ecr.us-east-1.amazonaws.com", false),
            (
                Aws,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
                false,
            ),
            (
                Aws,
                "evil.io/123456789012.dkr.ecr.us-east-1.amazonaws.com",
                false,
            ),
            (Aws, "public.ecr.aws", false),
            (Gcp, "gcr.io", true),
            (Gcp, "eu.gcr.io", true),
            (Gcp, "europe-west1-docker.pkg.dev", true),
            (Gcp, "gcr.io.evil.io", false),
            (Gcp, "evilgcr.io", false),
            (Gcp, "-docker.pkg.dev", false),
            (Azure, "myreg.azurecr.io", true),
            (Azure, "myreg.azurecr.cn:443", true),
            (Azure, "azurecr.io", false),
            (Azure, "a.b.azurecr.io", false),
            (Azure, "ghcr.io", false),
        ] {
            assert_eq!(provider.serves(host), serves, "{provider} {host}");
        }
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.eu-west-3.amazonaws.com:5000"),
            Some("eu-west-3")
        );
        assert_eq!(CloudProvider::from_spec("generic"), None);
        assert_eq!(CloudProvider::from_spec("gcp"), Some(Gcp));
    }
}
