//! How the command line names the kinds: `image repository`, `image policy`,
//! `image update`, `source git`, as the Flux CLI does.

use clap::ValueEnum;
use tagrelay_proto::config::Kind;

/// The `image …` object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageType {
    /// ImageRepository.
    Repository,
    /// ImagePolicy.
    Policy,
    /// ImageUpdateAutomation.
    Update,
}

impl ImageType {
    /// The stored kind.
    pub fn kind(self) -> Kind {
        match self {
            ImageType::Repository => Kind::ImageRepository,
            ImageType::Policy => Kind::ImagePolicy,
            ImageType::Update => Kind::ImageUpdateAutomation,
        }
    }
}

/// The `source …` object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceType {
    /// GitRepository.
    Git,
}

/// The short prefix `get all` puts before names, as `flux get image all`.
pub fn short_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ImageRepository => "imagerepository",
        Kind::ImagePolicy => "imagepolicy",
        Kind::ImageUpdateAutomation => "imageupdateautomation",
        Kind::GitRepository => "gitrepository",
    }
}
