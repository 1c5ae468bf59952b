//! The demo shop's product catalog.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One product of the demo shop. Prices are in USD; EUR shoppers see [`Product::price_in`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub brand: String,
    pub price: f64,
}

impl Product {
    /// The shelf price in `currency` ("USD" or "EUR"), rounded to a `.99`-style price point.
    pub fn price_in(&self, currency: &str) -> f64 {
        if currency == "EUR" {
            let eur = (self.price * 0.92).round() - 0.01;
            cents(eur.max(4.99))
        } else {
            self.price
        }
    }

    /// URL slug derived from the product name.
    pub fn slug(&self) -> String {
        slugify(&self.name)
    }
}

pub(crate) fn slugify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Round to whole cents.
pub(crate) fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub(crate) struct CategorySpec {
    pub name: &'static str,
    pub code: &'static str,
    pub nouns: &'static [&'static str],
    pub min_price: f64,
    pub max_price: f64,
    pub share: usize,
}

pub(crate) const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        name: "Shoes",
        code: "SH",
        nouns: &[
            "Trail Runner",
            "Court Sneaker",
            "Chelsea Boot",
            "Penny Loafer",
            "Hiking Boot",
            "Slip-On",
            "Desert Boot",
            "Running Shoe",
            "Canvas High-Top",
            "Suede Moccasin",
        ],
        min_price: 49.0,
        max_price: 249.0,
        share: 40,
    },
    CategorySpec {
        name: "Outerwear",
        code: "OW",
        nouns: &[
            "Parka",
            "Rain Jacket",
            "Puffer Vest",
            "Wool Overcoat",
            "Denim Jacket",
            "Fleece Pullover",
            "Trench Coat",
            "Shell Jacket",
            "Quilted Liner",
            "Bomber Jacket",
        ],
        min_price: 79.0,
        max_price: 399.0,
        share: 35,
    },
    CategorySpec {
        name: "Accessories",
        code: "AC",
        nouns: &[
            "Wool Beanie",
            "Leather Belt",
            "Sunglasses",
            "Knit Scarf",
            "Card Holder",
            "Watch Strap",
            "Baseball Cap",
            "Touchscreen Gloves",
            "Crew Socks 3-Pack",
            "Keyring",
        ],
        min_price: 5.0,
        max_price: 89.0,
        share: 45,
    },
    CategorySpec {
        name: "Bags",
        code: "BG",
        nouns: &[
            "Tote",
            "Daypack",
            "Weekender Duffel",
            "Crossbody Bag",
            "Laptop Sleeve",
            "Sling Bag",
            "Roll-Top Backpack",
            "Dopp Kit",
            "Messenger Bag",
            "Market Bag",
        ],
        min_price: 29.0,
        max_price: 299.0,
        share: 35,
    },
    CategorySpec {
        name: "Home",
        code: "HM",
        nouns: &[
            "Soy Candle",
            "Throw Blanket",
            "Ceramic Mug",
            "Linen Pillow Cover",
            "Bath Towel Set",
            "Stoneware Bowl",
            "Pour-Over Kettle",
            "Wool Rug",
            "Table Lamp",
            "Cutting Board",
        ],
        min_price: 9.0,
        max_price: 149.0,
        share: 45,
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Everyday",
    "Alpine",
    "Coastal",
    "Heritage",
    "Urban",
    "Essential",
    "Nordic",
    "Field",
    "Harbor",
    "Summit",
    "Studio",
    "Weekend",
    "Original",
    "Lightweight",
    "Recycled",
    "Waxed",
    "Merino",
    "Organic",
    "Canyon",
];

const BRANDS: &[&str] = &[
    "Northwind",
    "Alder & Co",
    "Kestrel",
    "Fjellby",
    "Maple Row",
    "Lumen",
    "Harbor Goods",
    "Ostrava",
    "Sable",
    "Tidewater",
];

/// Builds the ~200 product catalog.
pub(crate) fn build_catalog(rng: &mut ChaCha8Rng) -> Vec<Product> {
    let mut products = Vec::with_capacity(200);
    for spec in CATEGORIES {
        let mut combos: Vec<(usize, usize)> = (0..ADJECTIVES.len())
            .flat_map(|a| (0..spec.nouns.len()).map(move |n| (a, n)))
            .collect();
        combos.shuffle(rng);
        for (a, n) in combos.into_iter().take(spec.share) {
            let number = products.len() + 1;
            let brand = BRANDS[rng.gen_range(0..BRANDS.len())];
            let raw: f64 = rng.gen_range(spec.min_price..spec.max_price);
            let ending = match rng.gen_range(0..20) {
                0..=13 => 0.99,
                14..=16 => 0.0,
                17..=18 => 0.95,
                _ => 0.5,
            };
            let price = cents((raw.floor() + ending).clamp(5.0, 400.0));
            products.push(Product {
                product_id: format!("prod_{number:04}"),
                sku: format!(
                    "{}-{}-{number:04}",
                    spec.code,
                    &brand[..3].to_ascii_uppercase()
                ),
                name: format!("{} {}", ADJECTIVES[a], spec.nouns[n]),
                category: spec.name.to_string(),
                brand: brand.to_string(),
                price,
            });
        }
    }
    products
}
