//! Quay robot account federation (keyless authentication, Quay 3.13 and later): the pod's
//! token is the password of HTTP Basic authentication as the robot at
//! `GET /oauth2/federation/robot/token`, which answers `{"token": ...}`, a robot token
//! to pull as the robot.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use icp_core::{
    Build, Context, ImageRef, Request, Secret, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey, quote,
};
use icp_http::Shape;
use serde::Deserialize;

use crate::common::{self, Base, Choice};
use crate::endpoint::Endpoint;
use crate::{Error, Limits};

/// The annotation the community Quay credential provider reads the robot from.
pub const ROBOT_ANNOTATION: &str = "quay.io/federated-robot-account";

/// The pod token's audience when the rule names none.
pub const DEFAULT_AUDIENCE: &str = "quay";

/// The federation endpoint, under the Quay server.
const PATH: &str = "/oauth2/federation/robot/token";

/// The `quay:` section of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuayConfig {
    /// The robot account, `org+name`, when the service account names none.
    pub robot: Option<String>,
    /// The service account annotation naming the robot; it wins over `robot`.
    pub robot_annotation: Option<String>,
    /// The Quay server, `https://host[:port]`; default: the image's registry.
    pub url: Option<String>,
    /// The audience of the pod's token (default `quay`).
    pub token_audience: Option<String>,
    /// Allows a plain `http://` loopback `url`, for tests.
    #[serde(default)]
    pub insecure: bool,
}

/// The `quay` backend.
#[derive(Debug, Clone)]
pub struct Quay {
    base: Base,
    robot: Option<String>,
    robot_annotation: Option<String>,
    url: Option<Endpoint>,
}

impl Quay {
    /// Checks `config`. Opens nothing.
    pub fn new(config: QuayConfig, context: &Context<'_>) -> Result<Quay, Error> {
        let section = <Quay as Build>::NAME;
        let audience = config
            .token_audience
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let mut base = Base::new(section, audience, context.env)?;
        base.annotation_key("robotAnnotation", config.robot_annotation.as_deref())?;
        if config.robot.is_none() && config.robot_annotation.is_none() {
            return Err(Error::config(section, "set robot, robotAnnotation or both"));
        }
        if let Some(robot) = &config.robot
            && !is_robot(robot)
        {
            return Err(Error::config(
                section,
                format!(
                    "robot {} is not a robot account name (org+name)",
                    quote(robot)
                ),
            ));
        }
        let url = config
            .url
            .map(|url| Endpoint::parse("url", &url, config.insecure))
            .transpose()
            .map_err(|reason| Error::config(section, reason))?;
        Ok(Quay {
            base,
            robot: config.robot,
            robot_annotation: config.robot_annotation,
            url,
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Quay {
        self.base.limits = limits;
        self
    }

    /// The same backend with another lifetime for a token that is not a JWT (the rule's
    /// `cacheDuration`; 5 minutes by default).
    pub fn with_default_lifetime(mut self, lifetime: std::time::Duration) -> Quay {
        self.base.default_lifetime = lifetime;
        self
    }

    fn endpoint(&self, image: &ImageRef) -> Endpoint {
        self.url
            .clone()
            .unwrap_or_else(|| Endpoint::registry(image.registry()))
    }

    fn robot<'a>(&'a self, account: &'a icp_core::ServiceAccount) -> Result<Choice<'a>, Error> {
        let choice = Choice::pick(
            account,
            self.robot_annotation.as_deref(),
            "quay.robotAnnotation",
            self.robot.as_deref(),
            "quay.robot",
        )
        .ok_or_else(|| {
            Error::NoCredentials(format!(
                "service account {account}: no annotation {} and the rule names no robot",
                self.robot_annotation.as_deref().unwrap_or_default()
            ))
        })?;
        if !is_robot(choice.value) {
            return Err(Error::NoCredentials(format!(
                "service account {account}: {} is not a robot account name (org+name)",
                choice.describe()
            )));
        }
        Ok(choice)
    }
}

/// Whether `name` is a Quay robot account name: `namespace+shortname`, lowercase
/// alphanumerics, `_`, `-` and `.`.
fn is_robot(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 255
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
    };
    matches!(name.split_once('+'), Some((org, robot)) if part(org) && part(robot))
}

impl Build for Quay {
    const NAME: &'static str = "quay";
    const POD_IDENTITY_ANNOTATIONS: &'static [&'static str] = &[ROBOT_ANNOTATION];
    type Config = QuayConfig;
    type Error = Error;

    fn default_config() -> Option<QuayConfig> {
        None
    }

    fn build(config: QuayConfig, context: &Context<'_>) -> Result<Quay, Error> {
        Quay::new(config, context)
    }

    fn with_default_lifetime(self, lifetime: std::time::Duration) -> Quay {
        Quay::with_default_lifetime(self, lifetime)
    }
}

impl TokenBackend for Quay {
    type Error = Error;

    fn serves(&self, _image: &ImageRef) -> bool {
        true
    }

    /// The service account, the robot and where it came from, the audience and the
    /// Quay server.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let account = self.base.account(request)?;
        let robot = self.robot(account)?;
        let endpoint = self.endpoint(request.image);
        Ok(self.base.key(
            account,
            &robot.keys(),
            &format!("robot={}", robot.value),
            endpoint.url(),
        ))
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let account = self.base.account(request)?;
        let robot = self.robot(account)?;
        let endpoint = self.endpoint(request.image);
        let service = endpoint.authority().to_owned();
        let url = endpoint.join(PATH);
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", robot.value, account.token.expose()))
        );
        tracing::debug!(service, service_account = %account, robot = robot.value, "exchanging the pod's token for a Quay robot token");
        let start = SystemTime::now();
        let fetched = self.base.run(&service, &account.token, async |fetch| {
            let json = fetch
                .json(&service, &[Shape::Detail], || {
                    icp_http::Request::get(url.clone())
                        .header("Authorization", basic.clone())
                        .header("Accept", "application/json")
                })
                .await?;
            let token =
                common::text(&json, "/token").ok_or_else(|| common::missing(&service, "token"))?;
            let expires_at = self.base.expiry(&service, start, None, token)?;
            Ok(Token {
                username: robot.value.to_owned(),
                password: Secret::new(token),
                expires_at: Some(expires_at),
            })
        });
        fetched.map_err(|error| common::context(account, robot.describe(), error))
    }

    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(self.base.token_use())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names() {
        assert!(is_robot("acme+puller"));
        assert!(is_robot("my_org+ci.bot-1"));
        for bad in ["acme", "+x", "acme+", "Acme+x", "a+b+c", "a+b c", "a/b+c"] {
            assert!(!is_robot(bad), "{bad}");
        }
    }
}
