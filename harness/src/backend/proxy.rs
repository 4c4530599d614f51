/*!
The forward proxy of a `proxy` pod, shared by every backend: a real squid on an address the
pod's containers reach, which alone resolves [`PROXY_ONLY_HOST`] to the storage server. The pod
then addresses storage by that name, so every object in the bucket came through the proxy.
*/

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use testsupport::Squid;

use crate::pod::{Endpoints, PROXY_ONLY_HOST, Pod};

/// Starts the pod's proxy on `listen` when it has one; `storage` is the server's
/// `http://ip:port` as the pod would reach it directly. Returns the proxy (kept until the pod is
/// observed) and the endpoints the pod's placeholders get.
pub fn start(pod: &Pod, listen: IpAddr, storage: String) -> Result<(Option<Squid>, Endpoints)> {
    if !pod.proxy {
        return Ok((
            None,
            Endpoints {
                storage,
                proxy: String::new(),
            },
        ));
    }
    let Some((ip, port)) = storage
        .strip_prefix("http://")
        .and_then(|hp| hp.rsplit_once(':'))
    else {
        bail!("a proxy pod needs an http://ip:port storage server, not {storage:?}");
    };
    let ip: IpAddr = ip
        .trim_matches(['[', ']'])
        .parse()
        .with_context(|| format!("storage server address {storage}"))?;
    let squid = Squid::start_on(listen, &[(PROXY_ONLY_HOST, ip)]).map_err(anyhow::Error::msg)?;
    let endpoints = Endpoints {
        storage: format!("http://{PROXY_ONLY_HOST}:{port}"),
        proxy: squid.url(),
    };
    Ok((Some(squid), endpoints))
}

/// `METHOD URL` of each request the pod's proxy served (`None` without a proxy).
pub fn served(squid: &Option<Squid>) -> Option<Vec<String>> {
    squid.as_ref().map(Squid::requests)
}
