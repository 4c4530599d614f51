/*!
Fetching with libgit2 as `git fetch <url> <ref>` does: credentials per ref (token userinfo, SSH
keys, host fingerprints, cookies), git's choice among advertised refs, and a fast path for local
sources, whose packs are linked in rather than re-packed by libgit2's local transport.
*/

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    ProxyOptions, RemoteCallbacks, Repository,
};

use crate::auth::{CookieJar, HostKeyVerdict, host_key_verdict};
use crate::ghapp::AppTokens;
use crate::refclone::StepError;

/// Where per-organisation tokens come from (upstream's token and user generators).
#[derive(Default, Clone)]
pub enum TokenSource {
    #[default]
    None,
    /// The same OAuth token for every org, as userinfo `<token>:x-oauth-basic`.
    OAuth(String),
    /// GitHub App installation tokens, as userinfo `x-access-token:<token>`.
    App(Arc<AppTokens>),
}

/// Credentials for fetching one ref.
#[derive(Debug, Default, Clone)]
pub struct Access {
    /// `(user, password)` put into http(s) URIs and answered to Basic challenges.
    pub userinfo: Option<(String, String)>,
    /// Private key files offered to SSH servers, in order.
    pub key_files: Vec<PathBuf>,
    /// known_hosts lines; when present, SSH host keys must match one of them.
    pub host_fingerprints: Vec<String>,
    /// known_hosts lines for hosts checked strictly when there are no fingerprints (the
    /// image's github.com keys).
    pub pinned_known_hosts: Arc<str>,
    /// Cookies sent to http(s) remotes (`http.cookiefile`).
    pub cookies: Option<CookieJar>,
}

impl Access {
    /// The URI to fetch from, with the token as userinfo when there is one.
    pub fn fetch_url(&self, uri: &str) -> String {
        match &self.userinfo {
            Some((user, password)) => crate::auth::with_userinfo(uri, user, password),
            None => uri.to_string(),
        }
    }

    /// Callbacks answering libgit2's credential and host-key questions. Each kind of
    /// credential is offered once per connection so a rejected one cannot loop forever.
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut userpass_tried = false;
        let mut username_tried = false;
        let mut next_key = 0usize;
        cb.credentials(move |_url, user_from_url, allowed| {
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !userpass_tried {
                if let Some((user, password)) = &self.userinfo {
                    userpass_tried = true;
                    return Cred::userpass_plaintext(user, password);
                }
            }
            let user = user_from_url.unwrap_or("git");
            if allowed.contains(CredentialType::SSH_KEY) && next_key < self.key_files.len() {
                next_key += 1;
                return Cred::ssh_key(user, None, &self.key_files[next_key - 1], None);
            }
            if allowed.contains(CredentialType::USERNAME) && !username_tried {
                username_tried = true;
                return Cred::username(user);
            }
            Err(git2::Error::from_str(
                "authentication required but no usable credentials are configured",
            ))
        });
        cb.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey().and_then(|h| h.hostkey()) else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let verdict = host_key_verdict(
                &self.host_fingerprints,
                &self.pinned_known_hosts,
                host,
                hostkey,
            );
            match verdict {
                HostKeyVerdict::Known => Ok(CertificateCheckStatus::CertificateOk),
                HostKeyVerdict::Default => Ok(CertificateCheckStatus::CertificatePassthrough),
                HostKeyVerdict::Refused => Err(git2::Error::from_str(&format!(
                    "host key verification failed for {host}"
                ))),
            }
        });
        cb
    }

    /// Options for fetching `url`: these credentials, no tags, and the proxy that applies.
    pub(crate) fn fetch_options(
        &self,
        url: &str,
    ) -> Result<(FetchOptions<'_>, Option<String>), git2::Error> {
        let mut fo = FetchOptions::new();
        let proxy =
            crate::proxy::for_remote(url).map_err(|e| git2::Error::from_str(&e.to_string()))?;
        if let Some(proxy) = proxy {
            let mut po = ProxyOptions::new();
            po.url(&proxy);
            fo.proxy_options(po);
        }
        fo.remote_callbacks(self.callbacks());
        // An anonymous `git fetch <url> <ref>` follows no tags; only `--tags` brings them.
        fo.download_tags(AutotagOption::None);
        let cookie = self
            .cookies
            .as_ref()
            .and_then(|j| j.header_for(url))
            .map(|c| format!("Cookie: {c}"));
        Ok((fo, cookie))
    }
}

/// Whether libgit2 serves `url` with its local transport (a path or `file://`).
pub(crate) fn is_local_url(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    if url.contains("://") {
        return false;
    }
    // scp-like `host:path` is SSH unless a slash comes before the colon.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
        _ => true,
    }
}

/// The filesystem path of a local remote URL.
pub(crate) fn local_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

/// Whether `objects` holds no object yet (a freshly initialised repository).
pub(crate) fn objects_empty(objects: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(objects.join("pack"))? {
        if entry?.file_name().to_string_lossy().ends_with(".pack") {
            return Ok(false);
        }
    }
    for entry in std::fs::read_dir(objects)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2
            && name.bytes().all(|b| b.is_ascii_hexdigit())
            && std::fs::read_dir(entry.path())?.next().is_some()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Links `from` to `to`, copying when a hard link is impossible (another filesystem).
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// Seeds an empty repository with the packs and loose objects of a local source repository,
/// as `git clone --local` does. libgit2's local transport recomputes every delta of what it
/// sends (several times slower than git, which reuses them); after seeding, the fetch that
/// follows finds every wanted object present and only updates refs. The repository then holds
/// all of the source's objects, not only the fetched history. Sources that borrow objects
/// (alternates), are shallow or are partial-clone promisors take the normal path.
pub(crate) fn seed_from_local(repo: &Repository, url: &str) -> Result<(), StepError> {
    let Ok(src) = Repository::open(local_path(url)) else {
        // Let the fetch report an unusable source the way it always does.
        return Ok(());
    };
    let src_objects = src.path().join("objects");
    let dst_objects = repo.path().join("objects");
    if src.is_shallow()
        || src_objects.join("info/alternates").exists()
        || !objects_empty(&dst_objects)?
    {
        return Ok(());
    }
    let mut packs: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(src_objects.join("pack"))? {
        let path = entry?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("promisor") => return Ok(()),
            Some("pack") => packs.push(path),
            _ => {}
        }
    }
    for pack in packs {
        let idx = pack.with_extension("idx");
        if !idx.exists() {
            continue;
        }
        // The pack first: an index without its pack would be a broken repository.
        let name = |p: &Path| {
            dst_objects
                .join("pack")
                .join(p.file_name().unwrap_or_default())
        };
        link_or_copy(&pack, &name(&pack))?;
        link_or_copy(&idx, &name(&idx))?;
    }
    for entry in std::fs::read_dir(&src_objects)? {
        let entry = entry?;
        let name = entry.file_name();
        let hex = name.to_string_lossy();
        if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let dst_dir = dst_objects.join(&name);
        std::fs::create_dir_all(&dst_dir)?;
        for obj in std::fs::read_dir(entry.path())? {
            let obj = obj?;
            link_or_copy(&obj.path(), &dst_dir.join(obj.file_name()))?;
        }
    }
    repo.odb()?.refresh()?;
    Ok(())
}

pub(crate) fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which advertised ref `git fetch <url> <name>` picks: the first of git's
/// `ref_rev_parse_rules` that names an advertised ref.
pub(crate) fn resolve_advertised<'h>(
    heads: &'h [(String, Oid)],
    name: &str,
) -> Option<&'h (String, Oid)> {
    let candidates = [
        name.to_string(),
        format!("refs/{name}"),
        format!("refs/tags/{name}"),
        format!("refs/heads/{name}"),
        format!("refs/remotes/{name}"),
        format!("refs/remotes/{name}/HEAD"),
    ];
    candidates
        .iter()
        .find_map(|c| heads.iter().find(|(n, _)| n == c))
}

/// What a fetch of one named ref brought: the ref git would name in FETCH_HEAD and its object.
pub(crate) struct Fetched {
    pub(crate) remote_ref: String,
    pub(crate) oid: Oid,
}

/// `git fetch [--depth N] <url> <name>`: resolves `name` against the advertisement as git does
/// and makes sure its objects are local.
pub(crate) fn fetch_named(
    repo: &Repository,
    access: &Access,
    url: &str,
    name: &str,
    depth: i64,
    out: &mut String,
) -> Result<Fetched, StepError> {
    if is_local_url(url) {
        seed_from_local(repo, url)?;
    }
    let mut remote = repo.remote_anonymous(url)?;
    let run = |remote: &mut git2::Remote<'_>, spec: &str| -> Result<(), git2::Error> {
        let (mut fo, cookie) = access.fetch_options(url)?;
        let headers: Vec<&str> = cookie.iter().map(String::as_str).collect();
        fo.custom_headers(&headers);
        if depth > 0 {
            fo.depth(i32::try_from(depth).unwrap_or(i32::MAX));
        }
        remote.fetch(&[spec], Some(&mut fo), None)
    };
    let fetched = if is_full_sha(name) {
        run(&mut remote, name)?;
        let oid = Oid::from_str(name)?;
        if repo.odb()?.exists(oid) {
            Some(Fetched {
                remote_ref: name.to_string(),
                oid,
            })
        } else {
            None
        }
    } else {
        run(&mut remote, name)?;
        let heads: Vec<(String, Oid)> = remote
            .list()?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        match resolve_advertised(&heads, name) {
            Some((full, oid)) => {
                // libgit2 resolves short names with different precedence; fetch git's choice
                // explicitly when it did not arrive.
                if !repo.odb()?.exists(*oid) {
                    run(&mut remote, full)?;
                }
                Some(Fetched {
                    remote_ref: full.clone(),
                    oid: *oid,
                })
            }
            None => None,
        }
    };
    let fetched = fetched.ok_or_else(|| {
        out.push_str(&format!("fatal: couldn't find remote ref {name}\n"));
        StepError::from(format!("couldn't find remote ref {name}"))
    })?;
    out.push_str(&format!(
        "From {}\n * {:<18} -> FETCH_HEAD\n",
        crate::auth::anonymize_url(url),
        short_ref(&fetched.remote_ref)
    ));
    Ok(fetched)
}

pub(crate) fn short_ref(full: &str) -> &str {
    full.strip_prefix("refs/heads/")
        .or_else(|| full.strip_prefix("refs/tags/"))
        .unwrap_or(full)
}

/// `git fetch [--depth N] <url> --tags --prune`: the remote HEAD into FETCH_HEAD and every tag.
pub(crate) fn fetch_head_and_tags(
    repo: &Repository,
    access: &Access,
    url: &str,
    depth: i64,
    out: &mut String,
) -> Result<(), StepError> {
    if is_local_url(url) {
        seed_from_local(repo, url)?;
    }
    let mut remote = repo.remote_anonymous(url)?;
    let (mut fo, cookie) = access.fetch_options(url)?;
    let headers: Vec<&str> = cookie.iter().map(String::as_str).collect();
    fo.custom_headers(&headers);
    fo.prune(FetchPrune::On);
    if depth > 0 {
        fo.depth(i32::try_from(depth).unwrap_or(i32::MAX));
    }
    remote.fetch(&["HEAD", "refs/tags/*:refs/tags/*"], Some(&mut fo), None)?;
    out.push_str(&format!(
        "From {}\n * branch             HEAD       -> FETCH_HEAD\n",
        crate::auth::anonymize_url(url)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls() {
        assert!(is_local_url("/srv/repo"));
        assert!(is_local_url("file:///srv/repo"));
        assert!(is_local_url("./a:b"));
        assert!(!is_local_url("https://github.com/o/r.git"));
        assert!(!is_local_url("git@github.com:o/r.git"));
        assert!(!is_local_url("ssh://git@github.com/o/r.git"));
    }

    #[test]
    fn advertised_ref_precedence_like_git() {
        let o = Oid::zero();
        let heads = vec![
            ("HEAD".to_string(), o),
            ("refs/heads/v1".to_string(), o),
            ("refs/tags/v1".to_string(), o),
            ("refs/pull/1/head".to_string(), o),
        ];
        assert_eq!(resolve_advertised(&heads, "v1").unwrap().0, "refs/tags/v1");
        assert_eq!(
            resolve_advertised(&heads, "pull/1/head").unwrap().0,
            "refs/pull/1/head"
        );
        assert_eq!(resolve_advertised(&heads, "HEAD").unwrap().0, "HEAD");
        assert!(resolve_advertised(&heads, "nope").is_none());
    }
}
