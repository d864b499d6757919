//! A real container registry (Debian's `docker-registry`, the CNCF
//! distribution registry) for tests: started on a free loopback port with
//! filesystem storage in a temporary directory, stopped on drop.
