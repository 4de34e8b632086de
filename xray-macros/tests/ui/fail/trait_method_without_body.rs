use xray_sdk::capture;

trait Store {
    #[capture]
    fn get(&self, key: &str) -> Option<u32>;
}

fn main() {}
