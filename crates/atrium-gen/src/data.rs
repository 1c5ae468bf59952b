//! Static vocabularies the generator draws from: names, places, stores, devices, user agents,
//! campaigns. Everything here is plain data; randomness lives in `lib.rs`.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Mia", "Lucas", "Amelia",
    "Mateo", "Harper", "Ethan", "Evelyn", "Leo", "Isla", "Henry", "Chloe", "Samuel", "Zoe",
    "Daniel", "Nora", "Jack", "Lea", "Felix", "Clara", "Hugo", "Ines", "Jonas", "Marie", "Louis",
    "Hannah", "Paul", "Camille", "Omar", "Priya", "Kenji", "Aisha", "Diego", "Sofia", "Mohammed",
    "Yuki", "Grace", "Ravi", "Elena", "Tomas", "Freya", "Maya", "Arjun",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Hill",
    "Adams",
    "Baker",
    "Nelson",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Dubois",
    "Bernard",
    "Moreau",
    "Laurent",
    "Jansen",
    "de Vries",
    "Bakker",
    "Fernandez",
    "Kim",
    "Patel",
    "Okafor",
    "Tanaka",
    "Rossi",
];

/// A customer's home: drives locale, timezone, currency, phone format and geo context.
pub(crate) struct Place {
    pub city: &'static str,
    pub region: &'static str,
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub timezone: &'static str,
    pub locale: &'static str,
    pub currency: &'static str,
    /// Area code for US numbers, city code for European ones.
    pub area: &'static str,
    pub weight: u32,
}

pub(crate) const PLACES: &[Place] = &[
    place(
        "New York",
        "NY",
        "US",
        40.7128,
        -74.006,
        "America/New_York",
        "en-US",
        "USD",
        "212",
        14,
    ),
    place(
        "Brooklyn",
        "NY",
        "US",
        40.6782,
        -73.9442,
        "America/New_York",
        "en-US",
        "USD",
        "718",
        8,
    ),
    place(
        "San Francisco",
        "CA",
        "US",
        37.7749,
        -122.4194,
        "America/Los_Angeles",
        "en-US",
        "USD",
        "415",
        9,
    ),
    place(
        "Los Angeles",
        "CA",
        "US",
        34.0522,
        -118.2437,
        "America/Los_Angeles",
        "en-US",
        "USD",
        "213",
        10,
    ),
    place(
        "Chicago",
        "IL",
        "US",
        41.8781,
        -87.6298,
        "America/Chicago",
        "en-US",
        "USD",
        "312",
        8,
    ),
    place(
        "Austin",
        "TX",
        "US",
        30.2672,
        -97.7431,
        "America/Chicago",
        "en-US",
        "USD",
        "512",
        6,
    ),
    place(
        "Seattle",
        "WA",
        "US",
        47.6062,
        -122.3321,
        "America/Los_Angeles",
        "en-US",
        "USD",
        "206",
        6,
    ),
    place(
        "Boston",
        "MA",
        "US",
        42.3601,
        -71.0589,
        "America/New_York",
        "en-US",
        "USD",
        "617",
        5,
    ),
    place(
        "Denver",
        "CO",
        "US",
        39.7392,
        -104.9903,
        "America/Denver",
        "en-US",
        "USD",
        "303",
        4,
    ),
    place(
        "Miami",
        "FL",
        "US",
        25.7617,
        -80.1918,
        "America/New_York",
        "es-US",
        "USD",
        "305",
        4,
    ),
    place(
        "Portland",
        "OR",
        "US",
        45.5152,
        -122.6784,
        "America/Los_Angeles",
        "en-US",
        "USD",
        "503",
        3,
    ),
    place(
        "Atlanta",
        "GA",
        "US",
        33.749,
        -84.388,
        "America/New_York",
        "en-US",
        "USD",
        "404",
        4,
    ),
    place(
        "Berlin",
        "BE",
        "DE",
        52.52,
        13.405,
        "Europe/Berlin",
        "de-DE",
        "EUR",
        "30",
        4,
    ),
    place(
        "Munich",
        "BY",
        "DE",
        48.1351,
        11.582,
        "Europe/Berlin",
        "de-DE",
        "EUR",
        "89",
        2,
    ),
    place(
        "Paris",
        "IDF",
        "FR",
        48.8566,
        2.3522,
        "Europe/Paris",
        "fr-FR",
        "EUR",
        "1",
        4,
    ),
    place(
        "Lyon",
        "ARA",
        "FR",
        45.764,
        4.8357,
        "Europe/Paris",
        "fr-FR",
        "EUR",
        "4",
        1,
    ),
    place(
        "Amsterdam",
        "NH",
        "NL",
        52.3676,
        4.9041,
        "Europe/Amsterdam",
        "nl-NL",
        "EUR",
        "20",
        2,
    ),
    place(
        "Madrid",
        "MD",
        "ES",
        40.4168,
        -3.7038,
        "Europe/Madrid",
        "es-ES",
        "EUR",
        "91",
        2,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn place(
    city: &'static str,
    region: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
    timezone: &'static str,
    locale: &'static str,
    currency: &'static str,
    area: &'static str,
    weight: u32,
) -> Place {
    Place {
        city,
        region,
        country,
        lat,
        lon,
        timezone,
        locale,
        currency,
        area,
        weight,
    }
}

/// Physical stores: `place` indexes [`PLACES`].
pub(crate) struct Store {
    pub id: &'static str,
    pub name: &'static str,
    pub place: usize,
    pub address: &'static str,
}

pub(crate) const STORES: &[Store] = &[
    Store {
        id: "st_nyc_soho",
        name: "Atrium SoHo",
        place: 0,
        address: "112 Prince St",
    },
    Store {
        id: "st_nyc_wburg",
        name: "Atrium Williamsburg",
        place: 1,
        address: "98 N 6th St",
    },
    Store {
        id: "st_sf_mission",
        name: "Atrium Mission",
        place: 2,
        address: "3150 18th St",
    },
    Store {
        id: "st_la_abbot",
        name: "Atrium Abbot Kinney",
        place: 3,
        address: "1305 Abbot Kinney Blvd",
    },
    Store {
        id: "st_chi_wicker",
        name: "Atrium Wicker Park",
        place: 4,
        address: "1520 N Milwaukee Ave",
    },
    Store {
        id: "st_ber_mitte",
        name: "Atrium Berlin Mitte",
        place: 12,
        address: "Alte Schoenhauser Str. 14",
    },
    Store {
        id: "st_par_marais",
        name: "Atrium Le Marais",
        place: 14,
        address: "24 Rue de Turenne",
    },
];

pub(crate) const DESKTOP_USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
];

pub(crate) const MOBILE_USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.104 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.104 Mobile Safari/537.36",
];

/// (model identifier, marketing name, screen width, height, density)
pub(crate) const IOS_MODELS: &[(&str, &str, u32, u32, u32)] = &[
    ("iPhone16,2", "iPhone 15 Pro Max", 430, 932, 3),
    ("iPhone15,4", "iPhone 15", 393, 852, 3),
    ("iPhone14,5", "iPhone 13", 390, 844, 3),
    ("iPhone14,7", "iPhone 14", 390, 844, 3),
    ("iPhone17,1", "iPhone 16 Pro", 402, 874, 3),
];
pub(crate) const IOS_VERSIONS: &[&str] = &["18.2", "18.1.1", "17.7", "17.6.1"];

/// (manufacturer, model, screen width, height, density)
pub(crate) const ANDROID_MODELS: &[(&str, &str, u32, u32, u32)] = &[
    ("Google", "Pixel 8", 1080, 2400, 3),
    ("Google", "Pixel 7a", 1080, 2400, 3),
    ("samsung", "SM-S921B", 1080, 2340, 3),
    ("samsung", "SM-A546B", 1080, 2340, 3),
    ("OnePlus", "CPH2581", 1440, 3168, 4),
];
pub(crate) const ANDROID_VERSIONS: &[&str] = &["15", "14", "13"];

pub(crate) const CARRIERS_US: &[&str] = &["T-Mobile", "Verizon", "AT&T"];
pub(crate) const CARRIERS_EU: &[&str] = &["Vodafone", "Orange", "Telekom"];

/// First octets that are ordinary public unicast space (no private, loopback or multicast).
pub(crate) const IP_FIRST_OCTETS: &[u8] = &[
    23, 24, 47, 50, 64, 66, 67, 68, 71, 72, 73, 74, 75, 76, 96, 97, 98, 99, 104, 107, 108, 174, 2,
    5, 31, 46, 62, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
];

/// Paid / owned campaign sources for landing pages: (source, medium, referrer).
pub(crate) const UTM_SOURCES: &[(&str, &str, Option<&str>, u32)] = &[
    ("google", "cpc", Some("https://www.google.com/"), 40),
    (
        "facebook",
        "paid_social",
        Some("https://m.facebook.com/"),
        25,
    ),
    ("newsletter", "email", None, 15),
    ("instagram", "social", Some("https://l.instagram.com/"), 20),
];

pub(crate) const UTM_CAMPAIGNS: &[&str] = &[
    "winter_sale_2026",
    "new_arrivals_jan",
    "valentines_gifts",
    "spring_preview",
    "brand_always_on",
    "retargeting_cart",
];

/// Non-campaign referrers (None = direct).
pub(crate) const ORGANIC_REFERRERS: &[(Option<&str>, u32)] = &[
    (None, 45),
    (Some("https://www.google.com/"), 35),
    (Some("https://www.bing.com/"), 5),
    (Some("https://duckduckgo.com/"), 4),
    (Some("https://www.pinterest.com/"), 6),
    (Some("https://www.reddit.com/"), 5),
];

pub(crate) const EMAIL_SUBJECTS: &[&str] = &[
    "New arrivals are here",
    "Your winter edit: up to 30% off",
    "Last chance: free shipping ends tonight",
    "Picked for you this week",
    "The rain-ready collection",
    "Members get early access",
    "Gifts they will actually use",
    "Back in stock: your favorites",
];

pub(crate) const COUPONS: &[(&str, f64)] = &[
    ("WELCOME10", 0.10),
    ("WINTER15", 0.15),
    ("VIP20", 0.20),
    ("FREESHIP", 0.0),
];

pub(crate) const TIERS: &[(&str, u32)] = &[("bronze", 60), ("silver", 28), ("gold", 12)];

pub(crate) const PAYMENT_METHODS: &[(&str, u32)] = &[
    ("credit_card", 60),
    ("paypal", 18),
    ("apple_pay", 15),
    ("google_pay", 7),
];

pub(crate) const REFUND_REASONS: &[&str] = &[
    "wrong_size",
    "damaged",
    "not_as_described",
    "changed_mind",
    "late_delivery",
];

pub(crate) const CANCEL_REASONS: &[&str] = &[
    "customer_request",
    "payment_declined",
    "out_of_stock",
    "fraud_suspected",
];

/// Relative activity by UTC hour (roughly US evenings plus a European bump).
pub(crate) const HOUR_WEIGHTS: [f64; 24] = [
    0.95, 0.9, 0.8, 0.65, 0.5, 0.4, 0.35, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.75,
    0.78, 0.8, 0.82, 0.85, 0.9, 0.95, 1.0,
];
