//! Hosts the in-memory CQL node on a port, for tests that run kurz as several
//! processes sharing one read store: `kurz-cql-double [127.0.0.1:9042]`. Prints the
//! bound address on stdout, then serves until killed.

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9042".into());
    let bound = kurz_testkit::cql::start_node_on(&addr);
    println!("listening {bound}");
    loop {
        std::thread::park();
    }
}
