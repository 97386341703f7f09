//! Self-test of the harness's Postgres part (needs neither the extension nor the relay), so a
//! broken machine setup shows up as one clear failure rather than as every other test failing.

use realtime_e2e::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwaway_cluster_has_logical_wal_and_survives_restart() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(wal_level, "logical", "the relay's replication stream needs wal_level=logical");
    client.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)").await.unwrap();

    cluster.restart().await;
    assert!(client.query_one("SELECT 1", &[]).await.is_err(), "old connections end with a fast restart");
    let client = cluster.client().await;
    let x: i32 = client.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
    assert_eq!(x, 1, "data survives the restart");
}
