//! How a model is drawn: its colour and marker, from the pipeline file or a default palette.
//!
//! Markers use matplotlib's names, as the seed notebook and pipeline files do (see
//! [`attn_spectra::pipeline::MARKERS`]).

use std::fmt;
use std::str::FromStr;

/// A marker shape (matplotlib name in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// `o`
    Circle,
    /// `s`
    Square,
    /// `^`
    TriangleUp,
    /// `v`
    TriangleDown,
    /// `D`
    Diamond,
    /// `x`
    X,
    /// `+`
    Plus,
    /// `*`
    Star,
    /// `<`
    TriangleLeft,
    /// `>`
    TriangleRight,
}

impl Marker {
    /// Every marker, in the order the default palette cycles through them.
    pub const ALL: [Marker; 10] = [
        Marker::Circle,
        Marker::Square,
        Marker::TriangleUp,
        Marker::Diamond,
        Marker::TriangleDown,
        Marker::X,
        Marker::Plus,
        Marker::Star,
        Marker::TriangleLeft,
        Marker::TriangleRight,
    ];

    /// The matplotlib name.
    pub fn name(self) -> &'static str {
        match self {
            Marker::Circle => "o",
            Marker::Square => "s",
            Marker::TriangleUp => "^",
            Marker::TriangleDown => "v",
            Marker::Diamond => "D",
            Marker::X => "x",
            Marker::Plus => "+",
            Marker::Star => "*",
            Marker::TriangleLeft => "<",
            Marker::TriangleRight => ">",
        }
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Marker {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Marker::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Marker::ALL.iter().map(|m| m.name()).collect();
                format!("unknown marker `{s}`; expected one of {}", names.join(" "))
            })
    }
}

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#RRGGBB`, upper case.
    pub fn hex(self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.0, self.1, self.2)
    }
}

impl FromStr for Rgb {
    type Err = String;
    /// Parses `#RRGGBB` (either case).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a colour like \"#E74C3C\"");
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        Ok(Rgb(byte(0)?, byte(2)?, byte(4)?))
    }
}

/// How one model is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Style {
    pub color: Rgb,
    pub marker: Marker,
}

/// matplotlib's `tab10` palette, where default colours come from.
pub const PALETTE: [Rgb; 10] = [
    Rgb(0x1f, 0x77, 0xb4),
    Rgb(0xff, 0x7f, 0x0e),
    Rgb(0x2c, 0xa0, 0x2c),
    Rgb(0xd6, 0x27, 0x28),
    Rgb(0x94, 0x67, 0xbd),
    Rgb(0x8c, 0x56, 0x4b),
    Rgb(0xe3, 0x77, 0xc2),
    Rgb(0x7f, 0x7f, 0x7f),
    Rgb(0xbc, 0xbd, 0x22),
    Rgb(0x17, 0xbe, 0xcf),
];

impl Style {
    /// A style from optional pipeline strings: a missing colour is the palette colour most
    /// unlike those in `used` ([`pick_color`]), a missing marker is a circle (the seed's
    /// default). Errors name the bad value.
    pub fn from_parts(
        color: Option<&str>,
        marker: Option<&str>,
        used: &[Rgb],
    ) -> Result<Style, String> {
        Ok(Style {
            color: match color {
                Some(c) => c.parse()?,
                None => pick_color(used),
            },
            marker: marker
                .map(str::parse)
                .transpose()?
                .unwrap_or(Marker::Circle),
        })
    }
}

/// The palette colour farthest (in RGB) from every colour in `used`; the first palette
/// colour when `used` is empty.
pub fn pick_color(used: &[Rgb]) -> Rgb {
    let d2 = |a: Rgb, b: Rgb| {
        let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).pow(2);
        d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
    };
    let mut best = PALETTE[0];
    let mut best_d = -1;
    for c in PALETTE {
        let nearest = used.iter().map(|u| d2(c, *u)).min().unwrap_or(i32::MAX);
        if nearest > best_d {
            best = c;
            best_d = nearest;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_marker_is_known() {
        for name in attn_spectra::pipeline::MARKERS {
            let m: Marker = name.parse().unwrap();
            assert_eq!(m.name(), *name);
        }
        assert!("?".parse::<Marker>().unwrap_err().contains("`?`"));
    }

    #[test]
    fn colours_parse_and_print() {
        assert_eq!("#E74C3C".parse::<Rgb>(), Ok(Rgb(0xE7, 0x4C, 0x3C)));
        assert_eq!("#e74c3c".parse::<Rgb>().unwrap().hex(), "#E74C3C");
        for bad in ["E74C3C", "#E74C3", "#GGGGGG", "", "#é4C3C0"] {
            assert!(bad.parse::<Rgb>().is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_styles_are_filled() {
        let s = Style::from_parts(Some("#000000"), None, &[]).unwrap();
        assert_eq!(s.color, Rgb(0, 0, 0));
        assert_eq!(s.marker, Marker::Circle);
        let s = Style::from_parts(None, Some("^"), &[]).unwrap();
        assert_eq!(s.color, PALETTE[0]);
        assert_eq!(s.marker, Marker::TriangleUp);
        assert!(Style::from_parts(Some("red"), None, &[]).is_err());
    }

    #[test]
    fn default_colours_avoid_used_ones() {
        assert_ne!(pick_color(&[PALETTE[0]]), PALETTE[0]);
        let _ = pick_color(&PALETTE);
        // Next to the seed's red and blue, neither tab10's red nor its blue is picked.
        let c = pick_color(&[Rgb(0xE7, 0x4C, 0x3C), Rgb(0x34, 0x98, 0xDB)]);
        assert_ne!(c, PALETTE[3]);
        assert_ne!(c, PALETTE[0]);
    }
}
