use xray_sdk::capture;

#[capture(annotate(user_id))]
fn handler(order_id: u64) -> u64 {
    order_id
}

fn main() {
    handler(1);
}
