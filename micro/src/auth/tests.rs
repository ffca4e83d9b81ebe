use super::*;

fn alice() -> Account {
    Account::new("alice", AccountKind::User, vec!["orders:write".into()])
}

#[tokio::test]
async fn tokens_verify_and_bad_ones_say_why_briefly() {
    let auth = Auth::issuer("shop").leeway(Duration::ZERO).build().unwrap();
    let token = auth
        .issue(&alice(), TokenKind::Access, Duration::from_secs(60))
        .unwrap();
    assert_eq!(auth.verify(&token).await.unwrap().scopes, ["orders:write"]);

    let reason = |t: String| {
        let auth = auth.clone();
        async move { auth.verify(&t).await.unwrap_err().detail().to_owned() }
    };
    assert_eq!(reason("garbage".into()).await, "invalid token: malformed");
    assert_eq!(
        reason("a".repeat(100 * 1024)).await,
        "invalid token: too long"
    );
    let expired = auth
        .issue(&alice(), TokenKind::Access, Duration::ZERO)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(reason(expired).await, "invalid token: expired");
    let other = auth
        .issue_for(
            &alice(),
            TokenKind::Access,
            Duration::from_secs(60),
            "billing",
        )
        .unwrap();
    assert_eq!(reason(other).await, "invalid token: wrong audience");
    let refresh = auth
        .issue(&alice(), TokenKind::Refresh, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        reason(refresh).await,
        "a refresh token is not an access token"
    );

    // alg none, and a key id nobody knows.
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = b64(
        serde_json::json!({"sub": "alice", "aud": "micro", "exp": unix_now() + 60, "typ": "access", "iss": "shop", "iat": 0}),
    );
    let none = format!(
        "{}.{claims}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"}))
    );
    assert!(reason(none).await.starts_with("invalid token"));
    let (_, rest) = token.split_once('.').unwrap();
    let wrong_kid = format!(
        "{}.{rest}",
        b64(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "nope"}))
    );
    assert_eq!(reason(wrong_kid).await, "invalid token: unknown key");
    // Another issuer's key, with this issuer's key id.
    let other = Auth::issuer("shop").build().unwrap();
    let forged = other
        .issue(&alice(), TokenKind::Access, Duration::from_secs(60))
        .unwrap();
    let (_, rest) = forged.split_once('.').unwrap();
    let forged = format!(
        "{}.{rest}",
        b64(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": auth.key_id().unwrap()}))
    );
    assert_eq!(reason(forged).await, "invalid token: bad signature");
}

#[tokio::test]
async fn a_rotated_key_verifies_only_for_its_grace() {
    let auth = Auth::issuer("shop")
        .key_grace(Duration::from_millis(300))
        .build()
        .unwrap();
    let before = auth
        .issue(&alice(), TokenKind::Access, Duration::from_secs(60))
        .unwrap();
    let old = auth.key_id().unwrap();
    let new = auth.rotate_keys().unwrap();
    assert_ne!(old, new);
    assert!(auth.verify(&before).await.is_ok(), "within its grace");
    assert_eq!(auth.jwks().unwrap()["keys"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = auth.verify(&before).await.unwrap_err();
    assert_eq!(err.detail(), "invalid token: unknown key");
    let after = auth
        .issue(&alice(), TokenKind::Access, Duration::from_secs(60))
        .unwrap();
    assert!(auth.verify(&after).await.is_ok());
    auth.rotate_keys().unwrap();
    assert_eq!(auth.jwks().unwrap()["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn accounts_log_in_and_refresh() {
    let auth = Auth::issuer("shop").build().unwrap();
    let (account, secret) = auth
        .generate("svc-a", AccountKind::Service, &["orders:read"])
        .await
        .unwrap();
    assert_eq!(account.issuer, "shop");
    let again = auth.generate("svc-a", AccountKind::Service, &[]).await;
    assert_eq!(again.unwrap_err().code(), 409);
    assert_eq!(auth.token("svc-a", "wrong").await.unwrap_err().code(), 401);
    assert_eq!(auth.token("nobody", &secret).await.unwrap_err().code(), 401);
    let tokens = auth.token("svc-a", &secret).await.unwrap();
    assert_eq!(
        auth.verify(&tokens.access).await.unwrap().kind,
        AccountKind::Service
    );
    let renewed = auth.refresh(&tokens.refresh).await.unwrap();
    assert!(auth.verify(&renewed.access).await.is_ok());
    assert_eq!(auth.refresh(&tokens.access).await.unwrap_err().code(), 401);
    auth.delete("svc-a").await.unwrap();
    assert_eq!(auth.refresh(&tokens.refresh).await.unwrap_err().code(), 401);
}
