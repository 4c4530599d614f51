/*!
Go's `path.Join` and `path.Clean` for slash-separated paths. Object names and clone paths are
built with them upstream, so `..`, `.`, doubled and trailing slashes must collapse the same way.
*/

/// `path.Join`: joins the non-empty elements with `/` and cleans the result; "" if all are empty.
pub fn join(elems: &[&str]) -> String {
    let nonempty: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    clean(&nonempty.join("/"))
}

/// `path.Clean`: the shortest equivalent path by purely lexical processing.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("/", "/"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("abc/def/..", "abc"),
            ("abc/../../..", "../.."),
            ("/abc/../..", "/"),
            ("../../abc", "../../abc"),
            ("abc/def/../../..", ".."),
        ];
        for (i, want) in cases {
            assert_eq!(clean(i), want, "{i}");
        }
    }

    #[test]
    fn join_like_go() {
        assert_eq!(join(&["", ""]), "");
        assert_eq!(join(&["a", ""]), "a");
        assert_eq!(join(&["", "b"]), "b");
        assert_eq!(join(&["/", "a"]), "/a");
        assert_eq!(join(&["a/", "b"]), "a/b");
        assert_eq!(
            join(&["pr-logs/pull", "", "1", "job", "2"]),
            "pr-logs/pull/1/job/2"
        );
    }
}
