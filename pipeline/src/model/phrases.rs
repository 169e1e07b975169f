//! Windows Installer lines written in the display language: one entry per language and phrase,
//! each seen verbatim in a public log (sources as in `tests/data/real/LOCALIZED.md`).
//!
//! Each phrase is also a structural anchor (see `STRUCTURAL_ANCHORS`, which lists them in this
//! order), so a localized line is a candidate like its English form. Numbers stay ASCII in every
//! language seen, so what follows a phrase is read the same way everywhere. Languages not listed
//! here still get an outcome and a culprit from the language-independent lines (`msi.rs`).

/// What a localized phrase says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// `Action ended {time}: {action}. Return value {n}.`: the phrase comes right before `{n}`.
    ReturnValue,
    /// `... success or error status: {n}.`: the phrase comes right before `{n}`.
    FinalStatus,
    /// `Product: {product} -- Error {n}. {message}`: the phrase comes right before `{n}`.
    ErrorPrefix,
    /// The product line of a successful installation.
    ProductSuccess,
    /// The text of a message with a known number (the number is in `code`).
    Message,
}

/// One phrase of one language.
#[derive(Debug)]
pub(crate) struct Phrase {
    #[allow(dead_code)] // documents the entry; read by the tests
    pub lang: &'static str,
    pub key: Key,
    /// The literal as written in the log (also its anchor).
    pub text: &'static str,
    /// For [`Key::Message`]: the message's number.
    pub code: Option<i64>,
    /// Where this exact text was seen.
    #[allow(dead_code)] // documents the entry; read by the tests
    pub source: &'static str,
}

/// The phrase table.
pub(crate) const PHRASES: &[Phrase] = &[
    // `操作終了 16:40:01: LaunchConditions。 戻り値 3。`
    Phrase {
        lang: "ja",
        key: Key::ReturnValue,
        text: "。 戻り値 ",
        code: None,
        source: "Yanai-Taketo/yagura installer/lab/server2019-support-validation-result-2026-08-16.md @ 846d81d8",
    },
    // `Windows インストーラーにより製品がインストールされました。 製品名: awase、...、インストールの成功またはエラーの状態: 0`
    Phrase {
        lang: "ja",
        key: Key::FinalStatus,
        text: "インストールの成功またはエラーの状態: ",
        code: None,
        source: "cuzic/awase docs/adr ADR-177 (upgrade3.log)",
    },
    // `製品: awase -- インストールを正しく完了しました。`
    Phrase {
        lang: "ja",
        key: Key::ProductSuccess,
        text: "インストールを正しく完了しました",
        code: None,
        source: "cuzic/awase docs/adr ADR-177 (upgrade3.log)",
    },
    // `Windows Installer 已安裝該產品。產品名稱: Twitch Leecher 1.8。...安裝成功或錯誤狀態: 1603。`
    Phrase {
        lang: "zh-TW",
        key: Key::FinalStatus,
        text: "安裝成功或錯誤狀態: ",
        code: None,
        source: "https://github.com/Franiac/TwitchLeecher/issues/469",
    },
    // `Windows Installer 已安装产品。产品名称: WinFsp 2022+ARM64 Beta2。...安装成功或错误状态: 1603。`
    Phrase {
        lang: "zh-CN",
        key: Key::FinalStatus,
        text: "安装成功或错误状态: ",
        code: None,
        source: "https://github.com/winfsp/winfsp/issues/560",
    },
    // `... Fabricant : Nextcloud GmbH. Réussite de l’installation ou état d’erreur : 1603.`
    Phrase {
        lang: "fr",
        key: Key::FinalStatus,
        text: "ou état d’erreur : ",
        code: None,
        source: "https://github.com/nextcloud/desktop/issues/9201",
    },
    // `Produit : Nextcloud -- Erreur 1714. La version précédente de Nextcloud ne peut pas être supprimée. ...`
    Phrase {
        lang: "fr",
        key: Key::ErrorPrefix,
        text: " -- Erreur ",
        code: None,
        source: "https://github.com/nextcloud/desktop/issues/9201",
    },
    // The 1638 message, in German, in an otherwise English log.
    Phrase {
        lang: "de",
        key: Key::Message,
        text: "Eine andere Version des Produkts ist bereits installiert.",
        code: Some(1638),
        source: "https://github.com/hbons/SparkleShare/issues/649",
    },
];

/// The languages in the table.
#[cfg(test)]
pub(crate) fn languages() -> Vec<&'static str> {
    let mut v: Vec<&str> = PHRASES.iter().map(|p| p.lang).collect();
    v.dedup();
    v
}

/// The number right after `phrase` in `line` (`戻り値 3。` → 3).
pub(crate) fn number_after(line: &str, phrase: &str) -> Option<i64> {
    let i = line.find(phrase)? + phrase.len();
    let digits: String = line[i..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_is_a_structural_anchor_in_table_order() {
        let anchors = crate::model::STRUCTURAL_ANCHORS;
        let first = crate::model::s::MSI_PHRASE;
        for (i, p) in PHRASES.iter().enumerate() {
            assert_eq!(anchors[first + i], p.text, "{} {:?}", p.lang, p.key);
            assert!(!p.source.is_empty());
        }
        assert_eq!(languages(), ["ja", "zh-TW", "zh-CN", "fr", "de"]);
    }

    #[test]
    fn numbers_follow_phrases() {
        assert_eq!(
            number_after(
                "操作終了 16:40:01: LaunchConditions。 戻り値 3。",
                "。 戻り値 "
            ),
            Some(3)
        );
        assert_eq!(
            number_after(
                "制造商: Navimatics LLC。安装成功或错误状态: 1603。",
                "安装成功或错误状态: "
            ),
            Some(1603)
        );
        assert_eq!(
            number_after(
                "Réussite de l’installation ou état d’erreur : 1603.",
                "ou état d’erreur : "
            ),
            Some(1603)
        );
    }
}
