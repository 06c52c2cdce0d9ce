// The bounded in-order queue of publications and the sender that drains it
// to the broker.
#include <algorithm>
#include <mutex>

#include "derived/publisher_impl.h"

namespace komoku::derived {

bool Publisher::Impl::Flush() {
  std::lock_guard<std::mutex> flush(flush_mu_);
  bool sent_bucket = false;
  bool ok = true;
  for (;;) {
    Message m;
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      if (queue_.empty()) break;
      m = queue_.front();
    }
    Status st = publish_(m.topic, m.payload, m.retain);
    if (!st.ok()) {
      ok = false;
      break;
    }
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      // The front may have been dropped meanwhile (the queue overflowed).
      if (!queue_.empty() && queue_.front().id == m.id) queue_.pop_front();
      store_->metrics().Set("komoku_derived_queue_depth", static_cast<int64_t>(queue_.size()));
    }
    store_->metrics().Add("komoku_derived_published_total");
    if (m.agg) {
      std::lock_guard<std::mutex> lock(mu_);
      m.agg->sent_next = std::max(m.agg->sent_next, m.bucket_end);
      sent_bucket = true;
    }
    if (m.clears_discovery) {
      std::lock_guard<std::mutex> lock(mu_);
      discovery_to_clear_.erase(m.topic);
      sent_bucket = true;  // the state file forgets the topic
    }
  }
  if (sent_bucket) SaveState();
  return ok;
}

size_t Publisher::Impl::QueueDepth() const {
  std::lock_guard<std::mutex> lock(out_mu_);
  return queue_.size();
}

void Publisher::Impl::Enqueue(Message m) {
  {
    std::lock_guard<std::mutex> lock(out_mu_);
    m.id = next_message_id_++;
    if (queue_.size() >= std::max<size_t>(options_.queue_max, 1)) {
      queue_.pop_front();  // the oldest goes: newer values matter more
      store_->metrics().Add("komoku_derived_dropped_total");
    }
    queue_.push_back(std::move(m));
    store_->metrics().Set("komoku_derived_queue_depth", static_cast<int64_t>(queue_.size()));
  }
  out_cv_.notify_all();
}

void Publisher::Impl::SenderLoop() {
  for (;;) {
    const bool ok = Flush();
    std::unique_lock<std::mutex> lock(out_mu_);
    if (ok) {
      out_cv_.wait(lock, [&] { return sender_stop_ || !queue_.empty(); });
    } else {
      out_cv_.wait_for(lock, kRetryDelay, [&] { return sender_stop_; });
    }
    if (sender_stop_) return;
  }
}

}  // namespace komoku::derived
