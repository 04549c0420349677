//! Prometheus text scraped from `/metrics`.

use crate::http::{client, send};
use std::time::Duration;

/// One scrape of a Prometheus text endpoint.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// `GET url` (a full `/metrics` URL); `Err` unless it answers 200.
    pub async fn scrape(url: &str) -> Result<Metrics, String> {
        let a = send(client(Duration::from_secs(10)).get(url), None).await?;
        if a.status != 200 {
            return Err(format!("GET {url}: {} {}", a.status, a.text));
        }
        Ok(Metrics::parse(a.text))
    }

    pub fn parse(text: impl Into<String>) -> Metrics {
        Metrics { text: text.into() }
    }

    /// The value of the series written exactly as `series` (name plus labels in
    /// the exporter's order, e.g. `gateway_circuit_breaker_state{service="svc"}`),
    /// or `None` if it is absent.
    pub fn sample(&self, series: &str) -> Option<f64> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(s, _)| *s == series)
            .and_then(|(_, v)| v.parse().ok())
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn a_sample_is_found_by_its_exact_series() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE gateway_in_flight_requests gauge\n\
             gateway_in_flight_requests 2\n\
             gateway_in_flight_requests_total 9\n\
             gateway_config_reloads_total{result=\"ok\"} 1\n",
        );
        assert_eq!(m.sample("gateway_in_flight_requests"), Some(2.0));
        assert_eq!(
            m.sample("gateway_config_reloads_total{result=\"ok\"}"),
            Some(1.0)
        );
        assert_eq!(
            m.sample("gateway_config_reloads_total{result=\"error\"}"),
            None
        );
    }
}
