use xray_sdk::capture;

#[capture]
struct Handler {
    id: u32,
}

fn main() {
    let _ = Handler { id: 1 }.id;
}
