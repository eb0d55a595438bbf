// Must not compile with a LibTorch built without MPI (the pip builds): Distributed<Mpi> is
// refused at compile time with a readable message.
#include <parallax/parallax.hpp>

int main() {
  parallax::Distributed<parallax::Mpi> policy;
  (void)policy;
}
