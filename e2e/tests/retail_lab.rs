//! The retail lab itself: `examples/retail` with one store comes up (operator, store, both hubs
//! on AF_XDP), a POS terminal pays through it, and everything is gone afterwards.

use std::time::Duration;

use signpost_e2e::lab::{self, LabOptions, Proto, RetailLab};
use signpost_e2e::traffic;

#[test]
fn the_retail_lab_comes_up_carries_a_payment_and_leaves_nothing_behind() {
    if signpost_e2e::skip_unless_able(lab::available()) {
        return;
    }
    let names = {
        let lab = RetailLab::start(LabOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let payments = lab.target("payments", Proto::Tcp).unwrap();
        let pos = lab.client("store-0142", "pos").unwrap();
        let r = signpost_e2e::in_namespace(pos, move || {
            traffic::tcp_exchange(payments, 2048, Duration::from_secs(5))
        })
        .join()
        .unwrap();
        if let Err(e) = r {
            panic!("payment failed: {e}\n{}", lab.logs());
        }
        let sessions = lab.ctl("store-0142", &["sessions"]).unwrap();
        assert!(sessions.contains("payments"), "{sessions}");
        lab.namespace_names()
    };
    let listed = signpost_e2e::netns::run("ip", &["netns", "list"]).unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for n in names {
        assert!(
            !listed.split_whitespace().any(|l| l == n),
            "{n} is still there"
        );
    }
}
