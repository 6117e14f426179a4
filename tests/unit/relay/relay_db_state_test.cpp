#include "relay/relay_db.hpp"

#include <gtest/gtest.h>

#include <string>

#include "test_support.hpp"

namespace relaybait::relay {
namespace {

// Reading relay_state under a held lock is relay_db's own business: only paused(held) needs it.
template <class db_type>
concept reads_state_under_a_held_lock =
    requires(db_type& db, const typename db_type::held_lock& held, const std::string& key) { db.state(held, key); };
static_assert(!reads_state_under_a_held_lock<relay_db>);

TEST(relay_db_state, a_missing_key_has_no_value) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    EXPECT_FALSE(db.state("never-set").has_value());
}

TEST(relay_db_state, set_state_overwrites_the_value) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    db.set_state("logs:2024-01-01", "a");
    db.set_state("logs:2024-01-01", "b");
    EXPECT_EQ(db.state("logs:2024-01-01"), "b");
}

TEST(relay_db_state, paused_reads_the_same_with_and_without_a_held_lock) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    for (const bool paused : {false, true, false}) {
        if (paused != db.paused()) db.set_paused(paused);
        EXPECT_EQ(db.paused(), paused);
        const relay_db::held_lock held(db.mutex());
        EXPECT_EQ(db.paused(held), paused);
    }
    EXPECT_EQ(db.state("paused"), "0");  // stored as 0|1, which the CLI reads
}

}  // namespace
}  // namespace relaybait::relay
