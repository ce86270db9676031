//! Servers in containers (feature `testcontainers`). This project's CI machines have no
//! Docker engine, so the test is ignored there; run it with `--ignored` where one answers.

#![cfg(feature = "testcontainers")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[tokio::test]
#[ignore = "needs a Docker engine, which this project's CI machines do not have: run with --ignored where one answers"]
async fn containers_answer() {
    let pg = persistence_testing::docker::postgres().await.unwrap();
    assert!(pg.url().starts_with("postgres://postgres@"), "{}", pg.url());
    let port: u16 = pg
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let redis = persistence_testing::docker::redis().await.unwrap();
    let port: u16 = redis.url().rsplit(':').next().unwrap().parse().unwrap();
    let reply = persistence_testing::redis_command(port, "PING").unwrap();
    assert!(reply.contains("PONG"), "{reply}");
}
