//! The runtime seam's network and signals: the listeners a node serves on,
//! and how the process learns to stop or to reload its certificates.

use std::future::Future;

/// Serves `router` over HTTP/1 on `addr` until `shutdown` resolves.
///
/// Real mode only: the HTTP stack runs on real sockets, so under madsim this
/// refuses at once (simulated nodes are never given an HTTP address).
pub async fn serve_http(
    addr: std::net::SocketAddr,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(madsim)]
    {
        let _ = (addr, router, shutdown);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the HTTP gateway does not run in simulation",
        ))
    }
    #[cfg(not(madsim))]
    {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Connections still open this long after the shutdown signal (a caller
/// that never closes its end) are dropped, so that a node always stops.
pub const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves gRPC `router` on `addr` until `shutdown` resolves and its
/// connections drain (at most [`DRAIN_MAX`]): in plaintext, or over TLS
/// terminated here, each connection accepted with the configuration `tls`
/// holds when it arrives (so certificates reload without a restart). The
/// simulator's network has no TLS: there `tls` is ignored.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    addr: std::net::SocketAddr,
    tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let signalled = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let drain_over = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_MAX).await;
    };
    tokio::select! {
        biased;
        served = serve_grpc_until(router, addr, tls, signalled) => served,
        () = drain_over => {
            tracing::warn!(%addr, "connections still open {DRAIN_MAX:?} after the stop signal: dropped");
            Ok(())
        }
    }
}

async fn serve_grpc_until(
    router: tonic::transport::server::Router,
    addr: std::net::SocketAddr,
    tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    #[cfg(madsim)]
    {
        let _ = tls;
        Ok(router.serve_with_shutdown(addr, shutdown).await?)
    }
    #[cfg(not(madsim))]
    {
        let Some(tls) = tls else {
            return Ok(router.serve_with_shutdown(addr, shutdown).await?);
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let (accepted, handshaken) = tokio::sync::mpsc::channel(64);
        // Ends with this future, however it ends (a drain cut short
        // drops it).
        let _accepting = AbortOnDrop(tokio::spawn(async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(connection) => connection,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // As tonic's own listener does: small messages go at once.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(%remote, error = %e, "cannot set TCP_NODELAY");
                }
                let (acceptor, accepted) = (tls.acceptor(), accepted.clone());
                tokio::spawn(async move {
                    let handshake = acceptor.accept(tcp);
                    match super::timeout(std::time::Duration::from_secs(10), handshake).await {
                        Ok(Ok(stream)) => drop(accepted.send(stream).await),
                        Ok(Err(e)) => tracing::warn!(%remote, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::warn!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        }));
        let incoming = futures_util::stream::unfold(handshaken, |mut handshaken| async move {
            let stream = handshaken.recv().await?;
            Some((Ok::<_, std::io::Error>(stream), handshaken))
        });
        Ok(router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?)
    }
}

/// A task aborted when this handle is dropped.
#[cfg(not(madsim))]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

#[cfg(not(madsim))]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls `each` whenever the process gets SIGHUP (real mode; the simulator
/// sends none). Never returns.
pub async fn on_hangup(mut each: impl FnMut()) {
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                while hangups.recv().await.is_some() {
                    each();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
        }
    }
    let _ = &mut each;
    std::future::pending::<()>().await;
}

/// Resolves when the process is asked to stop: SIGTERM or Ctrl-C in real mode,
/// the simulator's `Handle::send_ctrl_c` under madsim.
pub async fn shutdown_signal() {
    #[cfg(madsim)]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
}
