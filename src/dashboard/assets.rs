//! The page, its script and its style, built into the extension: nothing is fetched from elsewhere.

use crate::http::Response;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The asset at `path`; the page gets this process's CSRF token (hex, so safe in an attribute).
pub fn asset(path: &str, csrf: &str) -> Option<Response> {
    Some(match path {
        "/" | "/index.html" => Response::new(200, "text/html; charset=utf-8", INDEX.replace("{{csrf}}", csrf)),
        "/app.js" => Response::new(200, "text/javascript; charset=utf-8", SCRIPT),
        "/app.css" => Response::new(200, "text/css; charset=utf-8", STYLE),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_no_inline_script_and_gets_the_token() {
        let page = asset("/", "abc123").unwrap().body;
        assert!(page.contains("content=\"abc123\""));
        assert!(!page.contains("{{csrf}}"));
        assert!(!page.contains("<script>"), "scripts come from /app.js only (the CSP forbids inline ones)");
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere");
        assert!(!SCRIPT.contains("innerHTML"), "text is set with textContent");
        assert!(asset("/nope", "x").is_none());
    }
}
