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

/// matplotlib's `tab10` palette, the default colour cycle.
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
    /// The default style of the `i`-th model: the palette's colours, then the next marker
    /// for each further round of colours.
    pub fn default_for(i: usize) -> Style {
        Style {
            color: PALETTE[i % PALETTE.len()],
            marker: Marker::ALL[(i / PALETTE.len()) % Marker::ALL.len()],
        }
    }

    /// A style from optional pipeline strings, filling what is missing from
    /// [`Style::default_for`]`(i)`. Errors name the bad value.
    pub fn from_parts(
        color: Option<&str>,
        marker: Option<&str>,
        i: usize,
    ) -> Result<Style, String> {
        let d = Style::default_for(i);
        Ok(Style {
            color: color.map(str::parse).transpose()?.unwrap_or(d.color),
            marker: marker
                .map(str::parse)
                .transpose()?
                .unwrap_or(Marker::Circle),
        })
    }
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
        let s = Style::from_parts(Some("#000000"), None, 3).unwrap();
        assert_eq!(s.color, Rgb(0, 0, 0));
        assert_eq!(s.marker, Marker::Circle);
        let s = Style::from_parts(None, Some("^"), 11).unwrap();
        assert_eq!(s.color, PALETTE[1]);
        assert_eq!(s.marker, Marker::TriangleUp);
        assert!(Style::from_parts(Some("red"), None, 0).is_err());
    }
}
