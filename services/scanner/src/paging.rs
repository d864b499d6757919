//! Tag-list pagination decisions, pure so they can be tested on every
//! registry's quirks without a registry:
//!
//! - follow the `Link: <…>; rel="next"` header when there is one (the OCI
//!   distribution specification's way), but only on the same origin, so
//!   credentials never go to another host; a page reached through a `Link`
//!   that has none is the last (as the specification says);
//! - else ask for the page after the last tag seen (`last=`), because Quay
//!   caps pages at 100 without saying so: a short page is never the end;
//! - stop when a page adds no tag not seen before: the CNCF registry ignores
//!   `n` and `last` and returns every tag every time, so a loop that waits
//!   for a short or empty page never ends. A registry seen to ignore `last`
//!   returns everything at once, so its first page is complete and later
//!   scans stop there (one call per unchanged scan).

use reqwest::Url;

/// How many tags a page asks for (`n=`).
pub const PAGE_SIZE: usize = 1000;

/// A bound on pages per listing, so a registry that keeps inventing new
/// tags on every page cannot keep a scan going for ever.
pub const MAX_PAGES: usize = 10_000;

/// What to do after one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// Fetch this URL next.
    Fetch(Url),
    /// The listing is complete.
    Done,
}

/// Why a listing cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// The `Link` header points to another scheme, host or port.
    #[error("the registry's Link header points to another origin ({0}); not followed")]
    ForeignLink(String),
    /// The `Link` header is not a URL.
    #[error("the registry's Link header is not a URL reference: {0}")]
    BadLink(String),
    /// More than [`MAX_PAGES`] pages.
    #[error("more than {MAX_PAGES} pages of tags; giving up")]
    TooManyPages,
}

/// What one page told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// The URL the page was fetched from.
    pub url: &'a Url,
    /// The `Link` header, if any.
    pub link: Option<&'a str>,
    /// The last tag of the page in the registry's order, if any.
    pub last_tag: Option<&'a str>,
    /// How many tags of the page were not seen on earlier pages.
    pub added: usize,
    /// How many pages were fetched so far, this one included.
    pub pages: usize,
    /// Whether this registry is known to ignore `last` (learned from an
    /// earlier listing, see [`ignores_last`]).
    pub registry_ignores_last: bool,
    /// Whether this page was reached by following a `Link` header.
    pub reached_by_link: bool,
}

/// The URL of the first page of `repository`'s tags.
pub fn first_page(base: &Url, repository: &str) -> Result<Url, PagingError> {
    let mut url = base
        .join(&format!("/v2/{repository}/tags/list"))
        .map_err(|e| PagingError::BadLink(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("n", &PAGE_SIZE.to_string());
    Ok(url)
}

/// Decides what follows `page`.
pub fn next_page(page: &Page<'_>) -> Result<NextPage, PagingError> {
    if page.added == 0 {
        return Ok(NextPage::Done);
    }
    if page.pages >= MAX_PAGES {
        return Err(PagingError::TooManyPages);
    }
    if let Some(target) = page.link.and_then(next_link_target) {
        let next = page
            .url
            .join(target)
            .map_err(|_| PagingError::BadLink(target.to_string()))?;
        if next.origin() != page.url.origin() {
            return Err(PagingError::ForeignLink(
                next.origin().ascii_serialization(),
            ));
        }
        return Ok(NextPage::Fetch(next));
    }
    if page.registry_ignores_last || page.reached_by_link {
        return Ok(NextPage::Done);
    }
    match page.last_tag {
        Some(last) => {
            let mut next = page.url.clone();
            let kept: Vec<(String, String)> = page
                .url
                .query_pairs()
                .filter(|(k, _)| k != "last" && k != "n")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            {
                let mut query = next.query_pairs_mut();
                query.clear();
                for (k, v) in &kept {
                    query.append_pair(k, v);
                }
                query.append_pair("n", &PAGE_SIZE.to_string());
                query.append_pair("last", last);
            }
            Ok(NextPage::Fetch(next))
        }
        None => Ok(NextPage::Done),
    }
}

/// Whether a page fetched with `last=<last>` shows the registry ignored
/// `last`: a registry that honours it returns only tags after it.
pub fn ignores_last<'a>(last: Option<&str>, page: impl IntoIterator<Item = &'a str>) -> bool {
    match last {
        Some(last) => page.into_iter().any(|tag| tag <= last),
        None => false,
    }
}

/// The `last` parameter of a page URL, if any.
pub fn last_param(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "last")
        .map(|(_, v)| v.into_owned())
}

/// The target of the `rel="next"` entry of a `Link` header value
/// (RFC 8288): `<url>; rel="next"`, possibly among other entries and
/// parameters, `rel` unquoted or with several relation types.
pub fn next_link_target(header: &str) -> Option<&str> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim());
        }
        rest = &after[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn page<'a>(
        url: &'a Url,
        link: Option<&'a str>,
        last: Option<&'a str>,
        added: usize,
    ) -> Page<'a> {
        Page {
            url,
            link,
            last_tag: last,
            added,
            pages: 1,
            registry_ignores_last: false,
            reached_by_link: false,
        }
    }

    #[test]
    fn link_header_forms() {
        assert_eq!(
            next_link_target(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link_target("<x>; rel=next"), Some("x"));
        assert_eq!(
            next_link_target(r#"<p>; rel="prev", <n>; title="x"; rel="last next""#),
            Some("n")
        );
        assert_eq!(next_link_target(r#"<p>; rel="prev""#), None);
        assert_eq!(next_link_target("garbage"), None);
        assert_eq!(next_link_target("<unterminated; rel=next"), None);
        assert_eq!(next_link_target(""), None);
    }

    #[test]
    fn the_first_page_asks_for_a_page_size() {
        let first = first_page(&url("http://r:5000"), "org/app").unwrap();
        assert_eq!(first.as_str(), "http://r:5000/v2/org/app/tags/list?n=1000");
    }

    #[test]
    fn a_link_is_followed_relative_to_the_page() {
        let current = url("https://r.example/v2/a/tags/list?n=1000");
        let next = next_page(&page(
            &current,
            Some(r#"</v2/a/tags/list?n=100&last=x>; rel="next""#),
            Some("x"),
            100,
        ))
        .unwrap();
        assert_eq!(
            next,
            NextPage::Fetch(url("https://r.example/v2/a/tags/list?n=100&last=x"))
        );
    }

    #[test]
    fn a_link_to_another_origin_is_refused() {
        let current = url("https://r.example/v2/a/tags/list");
        for link in [
            r#"<https://evil.example/v2/a/tags/list>; rel="next""#,
            r#"<http://r.example/v2/a/tags/list>; rel="next""#,
            r#"<https://r.example:444/v2/a/tags/list>; rel="next""#,
        ] {
            assert!(
                matches!(
                    next_page(&page(&current, Some(link), Some("x"), 1)),
                    Err(PagingError::ForeignLink(_))
                ),
                "{link}"
            );
        }
    }

    #[test]
    fn without_a_link_a_short_page_is_not_the_end() {
        let current = url("https://quay.example/v2/a/tags/list?n=1000");
        let next = next_page(&page(&current, None, Some("v1.99"), 100)).unwrap();
        assert_eq!(
            next,
            NextPage::Fetch(url("https://quay.example/v2/a/tags/list?n=1000&last=v1.99"))
        );
    }

    #[test]
    fn a_page_adding_nothing_ends_the_listing_even_with_a_link() {
        let current = url("https://r.example/v2/a/tags/list?last=z");
        assert_eq!(
            next_page(&page(&current, Some("<x>; rel=next"), Some("z"), 0)).unwrap(),
            NextPage::Done
        );
        assert_eq!(
            next_page(&page(&current, None, None, 0)).unwrap(),
            NextPage::Done
        );
    }

    #[test]
    fn a_registry_known_to_ignore_last_is_done_after_one_page() {
        let current = url("http://r/v2/a/tags/list?n=1000");
        let mut p = page(&current, None, Some("b"), 3);
        p.registry_ignores_last = true;
        assert_eq!(next_page(&p).unwrap(), NextPage::Done);
        p.link = Some("</v2/a/tags/list?last=b>; rel=next");
        assert!(matches!(next_page(&p).unwrap(), NextPage::Fetch(_)));
    }

    #[test]
    fn a_page_reached_by_a_link_without_one_is_the_last() {
        let current = url("http://r/v2/a/tags/list?n=100&last=x");
        let mut p = page(&current, None, Some("z"), 50);
        p.reached_by_link = true;
        assert_eq!(next_page(&p).unwrap(), NextPage::Done);
        p.reached_by_link = false;
        assert!(matches!(next_page(&p).unwrap(), NextPage::Fetch(_)));
    }

    #[test]
    fn page_count_is_bounded() {
        let current = url("http://r/v2/a/tags/list");
        let mut p = page(&current, None, Some("b"), 1);
        p.pages = MAX_PAGES;
        assert_eq!(next_page(&p), Err(PagingError::TooManyPages));
    }

    #[test]
    fn ignoring_last_is_recognised() {
        assert!(ignores_last(Some("b"), ["c", "a"]));
        assert!(ignores_last(Some("b"), ["b"]));
        assert!(!ignores_last(Some("b"), ["c", "d"]));
        assert!(!ignores_last(None, ["a"]));
        assert_eq!(
            last_param(&url("http://r/v2/a/tags/list?n=2&last=x%2By")),
            Some("x+y".to_string())
        );
    }
}
