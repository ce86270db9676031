//! Where tests find their servers: [`persistence_testing`] (throwaway, dedicated and
//! named PostgreSQL, Redis and Redis Cluster servers), plus round trips per operation
//! counted through a [`CountingProxy`].

pub use persistence_bench::CountingProxy;
pub use persistence_testing::*;

mod round_trips;
pub use round_trips::{counted_per_operation, round_trips_per_operation};
