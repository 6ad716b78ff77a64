"""Readable random names for flow runs: two words, "adjective-animal" (e.g. "great-ammonite").

The word lists are our own; each word is lower-case ASCII letters only, so a slug is also a valid
Kubernetes name fragment.
"""

from __future__ import annotations

import random

__all__ = ["ADJECTIVES", "ANIMALS", "generate_slug"]

ADJECTIVES: tuple[str, ...] = tuple(
    """
    able agile airy amber ample ancient arctic ardent astute autumn awake azure
    balmy bashful beaming bold bouncy brave breezy bright brilliant brisk bronze bubbly
    calm candid careful cheerful chipper civic classic clever cloudy coastal cobalt cosmic
    cozy crafty crimson crisp curious dainty dapper daring dashing dazzling deft devoted
    dreamy dusky dynamic eager earnest easy elated electric elegant emerald epic even
    exotic fabulous fair famous fancy fearless festive fiery fine flashy fleet fluffy
    fond frank free fresh friendly frosty gallant gentle giant gifted glad gleaming
    glossy golden graceful grand great green hardy hasty hearty helpful heroic honest
    humble icy ideal imaginary indigo jade jaunty jolly jovial joyful keen kind
    lavish lively loyal lucid lucky lunar magnetic majestic mellow merry mighty mint
    modest nifty nimble noble nocturnal olive optimal orange orderly patient peaceful
    peppy perky placid playful plucky polar polite proud quick quiet quirky radiant
    rapid rare ready regal resolute robust rosy royal ruby rustic sandy sapphire savvy
    scarlet serene sharp shiny silent silky silver sincere sleek smart smooth snappy
    snowy solar spirited splendid sporty steady stellar stoic striped sturdy sublime
    sunny super swift tactful tidy tranquil true trusty upbeat valiant vast velvet
    vibrant vigilant violet vivid warm wary whimsical wild winged wise witty zany zesty
    """.split()
)

ANIMALS: tuple[str, ...] = tuple(
    """
    aardvark albatross alligator alpaca ammonite anchovy anteater antelope armadillo
    axolotl baboon badger barracuda basilisk bat beagle bear beaver bison bobcat
    buffalo bumblebee butterfly buzzard camel capybara caracal cardinal caribou
    cassowary caterpillar catfish centipede chameleon cheetah chickadee chinchilla
    chipmunk cicada clam cobra cockatoo condor coral cormorant cougar coyote crab
    crane cricket crocodile crow cuckoo dachshund dingo dolphin donkey dove dragonfly
    duck dugong eagle eel egret elephant elk emu falcon ferret finch firefly flamingo
    fox frog gazelle gecko gerbil gibbon giraffe gnu goat goldfinch goose gopher
    gorilla grasshopper grouse guppy hamster hare hawk hedgehog heron hippo hornet
    horse hummingbird hyena ibex ibis iguana impala jackal jaguar jellyfish kangaroo
    kestrel kingfisher kiwi koala kookaburra ladybug lark lemming lemur leopard limpet
    lion lizard llama lobster lynx macaw magpie manatee mandrill marmot marten meerkat
    mink mole mongoose moose moth mouse mussel narwhal newt nightingale ocelot octopus
    okapi opossum orca oriole oryx osprey ostrich otter owl ox panda pangolin panther
    parrot partridge peacock pelican penguin pheasant pigeon pika platypus pony
    porcupine porpoise puffin puma python quail quokka rabbit raccoon raven reindeer
    rhino robin salamander salmon sandpiper scorpion seahorse seal shark sheep shrew
    shrimp skunk sloth snail sparrow squid squirrel starfish stingray stork swan
    tapir tarsier termite tern tiger toad tortoise toucan trout tuna turkey turtle
    urchin vole vulture walrus wallaby warthog wasp weasel whale wildcat wolf
    wolverine wombat woodpecker wren yak zebra
    """.split()
)


def generate_slug(rng: random.Random | None = None) -> str:
    """A random "adjective-animal" pair; pass a seeded ``rng`` for reproducible names."""
    chooser = rng or random
    return f"{chooser.choice(ADJECTIVES)}-{chooser.choice(ANIMALS)}"
