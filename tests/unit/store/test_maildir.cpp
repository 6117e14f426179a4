#include "store/maildir.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

using namespace relaybait::store;
namespace fs = std::filesystem;

TEST(Maildir, FolderNames) {
    for (const char* ok : {"", ".Probes", ".Logs", ".sentProbes", ".Rules.Phish-1", ".a_b"}) EXPECT_TRUE(valid_folder_name(ok)) << ok;
    for (const char* bad : {".", "..", "Probes", "./x", ".a/b", ".a..b", ".a.", "/etc", ".Ünï", ".a b", ".a\nb"})
        EXPECT_FALSE(valid_folder_name(bad)) << bad;
    EXPECT_FALSE(valid_folder_name("." + std::string(300, 'a')));
}

TEST(Maildir, FolderNamesAsPeopleWriteThem) {
    // The inbox: "" and INBOX in any case, with or without the Maildir++ dot.
    for (const char* inbox : {"", "INBOX", "inbox", "Inbox", "iNbOx", ".INBOX", ".inbox"})
        EXPECT_EQ(maildir_folder_for(inbox), std::optional<std::string>("")) << inbox;
    // A folder: the leading dot is optional.
    const std::pair<const char*, const char*> folders[] = {
        {"Probes", ".Probes"},         {".Probes", ".Probes"},       {"Spam.Bulk", ".Spam.Bulk"},
        {".Spam.Bulk", ".Spam.Bulk"}, {"a_b-1", ".a_b-1"},          {"INBOX.Probes", ".INBOX.Probes"},
        {"Inboxes", ".Inboxes"},       {"My-Inbox", ".My-Inbox"},
    };
    for (const auto& [written, stored] : folders) {
        EXPECT_EQ(maildir_folder_for(written), std::optional<std::string>(stored)) << written;
        EXPECT_TRUE(valid_folder_name(*maildir_folder_for(written))) << written;
        EXPECT_EQ(maildir_folder_for(stored), std::optional<std::string>(stored)) << "idempotent: " << stored;
    }
    // Refused: whatever would escape or confuse the Maildir.
    for (const char* bad : {".", "..", "...", "..Probes", "a..b", "a.", ".a.", "../etc", "a/b", "/etc", "a b", "x\ny",
                            "Ünï", "a:b", "a,b", "*", "%"})
        EXPECT_EQ(maildir_folder_for(bad), std::nullopt) << bad;
    EXPECT_EQ(maildir_folder_for(std::string(199, 'a')), "." + std::string(199, 'a'));  // 200 bytes stored
    EXPECT_EQ(maildir_folder_for(std::string(200, 'a')), std::nullopt);
}

TEST(Maildir, UniqueNamesFollowTheConvention) {
    EXPECT_EQ(maildir_unique_name(1795457223, 123456, 4242, 7, maildir_host("mx1.example.com")),
              "1795457223.M123456P4242Q7.mx1.example.com");
    EXPECT_EQ(maildir_host("a/b:c,d"), "a\\057b\\072c\\054d");
    EXPECT_EQ(maildir_host(""), "localhost");
}

TEST(Maildir, CreatesFoldersDovecotCanServe) {
    relaybait::test::temp_dir dir;
    const auto root = dir.path / "maildir";
    create_maildir_folder(root, "");
    create_maildir_folder(root, ".Probes");
    create_maildir_folder(root, ".Probes");  // idempotent
    for (const char* sub : {"cur", "new", "tmp"}) {
        EXPECT_TRUE(fs::is_directory(root / sub));
        EXPECT_TRUE(fs::is_directory(root / ".Probes" / sub));
    }
    EXPECT_TRUE(fs::is_regular_file(root / ".Probes" / "maildirfolder"));
    EXPECT_FALSE(fs::exists(root / "maildirfolder"));
    EXPECT_THROW(create_maildir_folder(root, "../escape"), std::system_error);
}
