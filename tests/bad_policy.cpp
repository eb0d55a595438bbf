// Must not compile: Trainer<NotAPolicy> fails the Policy concept with a readable static_assert.
#include <parallax/parallax.hpp>

struct NotAPolicy {
  void bind(const parallax::Model&, const parallax::BindContext&) {}
};

int main() {
  torch::nn::Linear model(2, 2);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  parallax::Trainer<NotAPolicy> trainer(model, optimizer);
}
