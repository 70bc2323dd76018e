//! Statistics over latency samples and the plain-text / Markdown table the run prints.

use std::time::Duration;

/// Latency samples of one measurement, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    us: Vec<f64>,
    sorted: bool,
}

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.push_us(d.as_secs_f64() * 1e6);
    }

    pub(crate) fn push_us(&mut self, us: f64) {
        self.us.push(us);
        self.sorted = false;
    }

    pub(crate) fn len(&self) -> usize {
        self.us.len()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.us.sort_by(|a, b| a.total_cmp(b));
            self.sorted = true;
        }
    }

    /// The `q` quantile (0.0..=1.0) by the nearest-rank method; 0 when empty.
    pub(crate) fn quantile(&mut self, q: f64) -> f64 {
        self.sort();
        if self.us.is_empty() {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.us.len() as f64).ceil() as usize;
        self.us[rank.clamp(1, self.us.len()) - 1]
    }

    pub(crate) fn p50(&mut self) -> f64 {
        self.quantile(0.50)
    }

    pub(crate) fn p99(&mut self) -> f64 {
        self.quantile(0.99)
    }
}

/// Microseconds as a short human string: `850 µs`, `1.42 ms`, `2.10 s`.
pub(crate) fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

/// A count per second with thousands separators: `12,345/s`.
pub(crate) fn fmt_rate(per_s: f64) -> String {
    format!("{}/s", thousands(per_s.round() as u64))
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One result line: what was measured, Orca's number, the floor's, their ratio, the target
/// and whether it was met (`None`: no target).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) metric: String,
    pub(crate) orca: String,
    pub(crate) floor: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

impl Row {
    pub(crate) fn new(section: &str, metric: &str) -> Self {
        Row {
            section: section.into(),
            metric: metric.into(),
            orca: String::new(),
            floor: String::new(),
            ratio: String::new(),
            target: String::new(),
            met: None,
        }
    }

    pub(crate) fn orca(mut self, v: impl Into<String>) -> Self {
        self.orca = v.into();
        self
    }

    pub(crate) fn floor(mut self, v: impl Into<String>) -> Self {
        self.floor = v.into();
        self
    }

    pub(crate) fn ratio(mut self, r: f64) -> Self {
        self.ratio = format!("{r:.2}x");
        self
    }

    pub(crate) fn target(mut self, t: impl Into<String>, met: bool) -> Self {
        self.target = t.into();
        self.met = Some(met);
        self
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            None => "",
            Some(true) => "met",
            Some(false) => "MISSED",
        }
    }

    fn cells(&self) -> [&str; 7] {
        [
            &self.section,
            &self.metric,
            &self.orca,
            &self.floor,
            &self.ratio,
            &self.target,
            self.verdict(),
        ]
    }
}

const HEADERS: [&str; 7] = ["#", "measurement", "orca", "floor", "ratio", "target", ""];

/// A Markdown table; also readable as plain text since the columns are padded.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.cells()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w - cell.chars().count();
            out.push(' ');
            out.push_str(cell);
            out.push_str(&" ".repeat(pad));
            out.push_str(" |");
        }
        out.push('\n');
        out
    };
    let mut out = line(HEADERS);
    out.push_str(&line(widths.map(|_| "")).replace(' ', "-"));
    for row in rows {
        out.push_str(&line(row.cells()));
    }
    out
}

/// Completions per second in each of several windows, one after another. One window's rate
/// swings with what else the machine does meanwhile: on PostgreSQL every run of this section
/// writes enough WAL to start a checkpoint, and the saves that follow it write whole pages.
/// The median stands for the run; the range is shown beside it.
pub(crate) struct Rates(pub(crate) Vec<f64>);

impl Rates {
    pub(crate) fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }

    /// The median, and the range when there was more than one window.
    pub(crate) fn describe(&self) -> String {
        let median = fmt_rate(self.median());
        if self.0.len() < 2 {
            return median;
        }
        let (min, max) = self
            .0
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        format!(
            "{median} ({} to {})",
            thousands(min.round() as u64),
            thousands(max.round() as u64)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut s = Samples::default();
        for us in (1..=100).rev() {
            s.push(Duration::from_micros(us));
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.p50(), 50.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.quantile(1.0), 100.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert_eq!(Samples::default().p50(), 0.0);
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_us(850.04), "850.0 µs");
        assert_eq!(fmt_us(1_420.0), "1.42 ms");
        assert_eq!(fmt_us(2_100_000.0), "2.10 s");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_rate(4_000.4), "4,000/s");
    }

    #[test]
    fn the_table_is_aligned_and_marks_missed_targets() {
        let rows = vec![
            Row::new("1", "engine p50")
                .orca("1.10 ms")
                .floor("1.00 ms")
                .ratio(1.1)
                .target("<= 1.05x", false),
            Row::new("2", "fan-out").orca("5 ms"),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("|---"));
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{text}");
        assert!(lines[2].contains("1.10x") && lines[2].contains("MISSED"));
        assert!(!lines[3].contains("MISSED") && !lines[3].contains("met"));
    }

    #[test]
    fn a_rate_is_the_median_window_with_the_range_beside_it() {
        let rates = Rates(vec![4_375.4, 3_811.0, 5_535.2]);
        assert_eq!(rates.median(), 4_375.4);
        assert_eq!(rates.describe(), "4,375/s (3,811 to 5,535)");
        assert_eq!(Rates(vec![812.0]).describe(), "812/s");
    }
}
