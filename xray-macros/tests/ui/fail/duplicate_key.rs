use xray_sdk::capture;

#[capture(annotate(id, id = id + 1))]
fn handler(id: u64) -> u64 {
    id
}

fn main() {
    handler(1);
}
