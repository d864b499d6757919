//! How the command line names the kinds: `image repository`, `image policy`,
//! `image update`, `source git`, as the Flux CLI does.

use clap::ValueEnum;
use tagrelay_proto::config::{Kind, Object, ObjectKey, DEFAULT_NAMESPACE};

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

/// One named object as the Flux CLI's verbs name it: `image repository
/// NAME`, `image policy NAME`, `image update NAME`, `source git NAME`,
/// `alert NAME`, `alert-provider NAME`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Named {
    /// An image automation object.
    Image {
        /// Which type.
        #[arg(value_enum)]
        object: ImageType,
        /// Its name.
        name: String,
    },
    /// A source.
    Source {
        /// Which type.
        #[arg(value_enum)]
        object: SourceType,
        /// Its name.
        name: String,
    },
    /// A notification Alert.
    Alert {
        /// Its name.
        name: String,
    },
    /// A notification Provider.
    AlertProvider {
        /// Its name.
        name: String,
    },
}

impl Named {
    /// The stored kind and the name.
    pub fn kind_and_name(&self) -> (Kind, &str) {
        match self {
            Named::Image { object, name } => (object.kind(), name),
            Named::Source {
                object: SourceType::Git,
                name,
            } => (Kind::GitRepository, name),
            Named::Alert { name } => (Kind::Alert, name),
            Named::AlertProvider { name } => (Kind::Provider, name),
        }
    }
}

/// `-n NS`, the namespace of the object a verb acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArg {
    /// The object's namespace.
    #[arg(short = 'n', long, global = true, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}

/// `-n NS` or `-A`: which namespaces a listing covers.
#[derive(Debug, Clone, clap::Args)]
pub struct Scope {
    /// Only this namespace.
    #[arg(short = 'n', long, global = true, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

impl Scope {
    /// Whether `object` is in the listed namespaces.
    pub fn admits(&self, object: &Object) -> bool {
        self.all_namespaces || object.namespace() == self.namespace
    }
}

/// One object named as the Flux CLI names it, with `-n NS`: what `delete`,
/// `suspend` and `resume` take.
#[derive(clap::Args)]
pub struct NamedArgs {
    #[command(subcommand)]
    what: Named,
    #[command(flatten)]
    namespace: NamespaceArg,
}

impl NamedArgs {
    /// The stored object's key.
    pub fn key(&self) -> ObjectKey {
        let (kind, name) = self.what.kind_and_name();
        ObjectKey::new(kind, &self.namespace.namespace, name)
    }
}

/// The short prefix `get all` puts before names, as `flux get image all`.
pub fn short_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ImageRepository => "imagerepository",
        Kind::ImagePolicy => "imagepolicy",
        Kind::ImageUpdateAutomation => "imageupdateautomation",
        Kind::GitRepository => "gitrepository",
        Kind::Namespace => "namespace",
        Kind::Provider => "provider",
        Kind::Alert => "alert",
    }
}
