//! Real Git remotes for tests: bare repositories over `file://`, smart HTTP
//! through `git http-backend`, created in temporary directories.
